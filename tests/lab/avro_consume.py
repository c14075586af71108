#!/usr/bin/env python3
"""An independent consumer for DataStorm's lab tests.

Reads every record of a topic with librdkafka (confluent-kafka), checks the
Confluent wire format (magic byte 0, 4-byte schema id), decodes the Avro
body with fastavro against the schema file, and prints one JSON summary.
"""
import argparse
import io
import json
import struct
import sys
import time

import fastavro
from confluent_kafka import Consumer, KafkaError


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--schema", required=True)
    ap.add_argument("--expect", type=int, required=True)
    ap.add_argument("--field", action="append", default=[], help="collect distinct values of this top-level field")
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()

    with open(a.schema) as f:
        schema = fastavro.parse_schema(json.load(f))
    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": "datastorm-avro-check-%d" % time.time_ns(),
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    c.subscribe([a.topic])
    count, errors = 0, []
    schema_ids, fields = set(), {f: set() for f in a.field}
    key_partitions = {}
    deadline = time.time() + a.timeout
    while count < a.expect and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                errors.append(str(m.error()))
            continue
        v = m.value()
        if len(v) < 5 or v[0] != 0:
            errors.append("record at %d/%d lacks the Confluent magic byte" % (m.partition(), m.offset()))
            continue
        schema_ids.add(struct.unpack(">I", v[1:5])[0])
        body = io.BytesIO(v[5:])
        try:
            datum = fastavro.schemaless_reader(body, schema)
        except Exception as e:  # noqa: BLE001 - report any decode failure
            errors.append("decode failed at %d/%d: %s" % (m.partition(), m.offset(), e))
            continue
        if body.tell() != len(v) - 5:
            errors.append("%d trailing bytes at %d/%d" % (len(v) - 5 - body.tell(), m.partition(), m.offset()))
        for f in a.field:
            fields[f].add(str(datum.get(f)))
        if m.key() is not None:
            key_partitions.setdefault(m.key().decode(), set()).add(m.partition())
        count += 1
    c.close()
    json.dump({
        "count": count,
        "errors": errors[:20],
        "schema_ids": sorted(schema_ids),
        "fields": {f: sorted(vs) for f, vs in fields.items()},
        "distinct_keys": len(key_partitions),
        "keys_in_more_than_one_partition": sorted(k for k, ps in key_partitions.items() if len(ps) > 1),
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
