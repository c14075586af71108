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


def murmur2(data):
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as a signed 32-bit int."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--schema", required=True)
    ap.add_argument("--expect", type=int, required=True)
    ap.add_argument("--field", action="append", default=[], help="collect distinct values of this top-level field")
    ap.add_argument("--key-field", help="check that each key is this field's string form and that the "
                    "partition is Kafka's default partitioner's choice (murmur2)")
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
    key_mismatches, partitioner_mismatches, null_keys = [], [], 0
    partitions = len(c.list_topics(a.topic, timeout=30).topics[a.topic].partitions)
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
        if a.key_field:
            want = datum.get(a.key_field)
            if m.key() is None:
                null_keys += 1
                if want is not None:
                    key_mismatches.append("null key for %r" % (want,))
            elif m.key().decode() != str(want):
                key_mismatches.append("key %r for field value %r" % (m.key(), want))
            elif (murmur2(m.key()) & 0x7FFFFFFF) % partitions != m.partition():
                partitioner_mismatches.append("key %r in partition %d" % (m.key(), m.partition()))
        count += 1
    c.close()
    json.dump({
        "count": count,
        "errors": errors[:20],
        "schema_ids": sorted(schema_ids),
        "fields": {f: sorted(vs) for f, vs in fields.items()},
        "distinct_keys": len(key_partitions),
        "keys_in_more_than_one_partition": sorted(k for k, ps in key_partitions.items() if len(ps) > 1),
        "key_partitions": {k: sorted(ps)[0] for k, ps in key_partitions.items()} if a.key_field else {},
        "key_mismatches": key_mismatches[:20],
        "partitioner_mismatches": partitioner_mismatches[:20],
        "null_keys": null_keys,
        "partitions": partitions,
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
