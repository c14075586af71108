# DataStorm tuning profile: throughput
#
# For a host that pushes as many records per second as it can (and for the
# brokers when they share the host). One setting per line:
#
#   NAME OP VALUE | why | source
#
# OP is `=` (set exactly), `>=` (at least) or `<=` (at most); for lists,
# `>=` and `<=` go field by field, and a value already on the right side is
# kept. Dotted names are sysctls (/proc/sys); names
# under `host.` are host settings that `datastorm tune check` reads and
# `tuning/apply` applies where it can (cpu_governor, thp_enabled) or only
# reports (smt, memlock, io_uring, nic_irqs).

net.core.wmem_max >= 16777216 | SO_SNDBUF (--socket-send-buffer) is capped here; 16 MiB holds several in-flight 1 MiB requests | kernel Documentation/admin-guide/sysctl/net.rst (wmem_max); Gregg, Systems Performance 2nd ed., 10.8.1
net.core.rmem_max >= 16777216 | SO_RCVBUF is capped here; the brokers' and the sink's receive side reads whole batches | kernel Documentation/admin-guide/sysctl/net.rst (rmem_max); Gregg, Systems Performance 2nd ed., 10.8.1
net.ipv4.tcp_wmem >= 4096 65536 16777216 | lets send-buffer autotuning grow to 16 MiB so a pipeline of large Produce requests is not stalled by the socket | kernel Documentation/networking/ip-sysctl.rst (tcp_wmem); Red Hat tuned profile network-throughput
net.ipv4.tcp_rmem >= 4096 131072 16777216 | the same for receive autotuning (broker side of the link) | kernel Documentation/networking/ip-sysctl.rst (tcp_rmem); Red Hat tuned profile network-throughput
net.core.netdev_max_backlog >= 16384 | more packets queued per CPU before the kernel drops at high packet rates | kernel Documentation/admin-guide/sysctl/net.rst (netdev_max_backlog); Red Hat Enterprise Linux Network Performance Tuning Guide
net.core.somaxconn >= 4096 | listen backlog of brokers and the sink when every shard of every instance connects at once | kernel Documentation/networking/ip-sysctl.rst (somaxconn)
net.ipv4.tcp_max_syn_backlog >= 8192 | half-open connections queued during that connection burst | kernel Documentation/networking/ip-sysctl.rst (tcp_max_syn_backlog); Gregg, Systems Performance 2nd ed., 10.8.1
net.ipv4.tcp_slow_start_after_idle = 0 | a connection that idles between linger-sealed batches keeps its congestion window instead of restarting slow | kernel Documentation/networking/ip-sysctl.rst (tcp_slow_start_after_idle); Gregg, Systems Performance 2nd ed., 10.8.1
net.ipv4.tcp_autocorking = 1 | coalesces small writes into fewer packets; DataStorm writes whole requests, so it costs nothing here | kernel Documentation/networking/ip-sysctl.rst (tcp_autocorking)
net.ipv4.ip_local_port_range = 10240 65535 | ephemeral ports for shards x brokers x streams x instances, and for sweeps that reconnect every point | kernel Documentation/networking/ip-sysctl.rst (ip_local_port_range); Gregg, Systems Performance 2nd ed., 10.8.1
net.core.busy_poll = 0 | busy polling spins a core that the generator needs | kernel Documentation/admin-guide/sysctl/net.rst (busy_poll)
net.core.busy_read = 0 | the same for socket reads | kernel Documentation/admin-guide/sysctl/net.rst (busy_read)
vm.swappiness <= 1 | brokers on the same host keep their heap and page cache in memory instead of swapping | Confluent Platform docs, Running Kafka in Production (Memory); kernel Documentation/admin-guide/sysctl/vm.rst (swappiness)
host.cpu_governor = performance | no frequency ramp-up delay under bursty load | Red Hat tuned profile throughput-performance; kernel Documentation/admin-guide/pm/cpufreq.rst
host.thp_enabled = always | huge pages for the brokers' JVM heap and fewer TLB misses on large buffers | Red Hat tuned profile throughput-performance
host.memlock >= 16777216 | glommio locks and registers its I/O memory with io_uring, counted against RLIMIT_MEMLOCK on older kernels | glommio LocalExecutorBuilder::io_memory docs; io_uring_register(2)
host.io_uring = available | glommio runs on io_uring; disabled io_uring (kernel.io_uring_disabled) stops every shard | kernel Documentation/admin-guide/sysctl/kernel.rst (io_uring_disabled); io_uring_setup(2)
host.smt = any | reported only: SMT siblings add throughput per socket but share a core's caches and ports | kernel Documentation/admin-guide/hw-vuln/core-scheduling.rst (SMT)
host.nic_irqs = any | reported only: keep NIC interrupts off the shards' cores (see docs/tuning.md) | Red Hat Enterprise Linux Network Performance Tuning Guide (IRQ affinity)
