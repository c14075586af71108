# DataStorm tuning profile: latency
#
# For runs that measure latency percentiles at a fixed --rate: short queues
# and polling instead of sleeping. Format as in throughput.profile:
#
#   NAME OP VALUE | why | source
#
# OP is `=` (set exactly), `>=` (at least) or `<=` (at most).

net.core.busy_read = 50 | spin up to 50 us in blocking socket reads instead of waiting for the interrupt | kernel Documentation/admin-guide/sysctl/net.rst (busy_read: "Recommended value is 50"); Red Hat tuned profile network-latency
net.core.busy_poll = 50 | the same for poll/select/epoll | kernel Documentation/admin-guide/sysctl/net.rst (busy_poll); Red Hat tuned profile network-latency
net.ipv4.tcp_autocorking = 0 | a small write leaves at once instead of waiting for the previous packet to be sent | kernel Documentation/networking/ip-sysctl.rst (tcp_autocorking)
net.ipv4.tcp_notsent_lowat <= 131072 | caps unsent bytes queued in the socket, so a new request does not wait behind megabytes of older ones | kernel Documentation/networking/ip-sysctl.rst (tcp_notsent_lowat)
net.ipv4.tcp_slow_start_after_idle = 0 | a paced connection that idles between batches keeps its congestion window | kernel Documentation/networking/ip-sysctl.rst (tcp_slow_start_after_idle)
net.core.wmem_max >= 16777216 | allows explicit SO_SNDBUF sizes for experiments; latency comes from queues, not from this limit | kernel Documentation/admin-guide/sysctl/net.rst (wmem_max)
net.core.rmem_max >= 16777216 | the same for SO_RCVBUF | kernel Documentation/admin-guide/sysctl/net.rst (rmem_max)
net.core.somaxconn >= 4096 | listen backlog for connection bursts from many shards | kernel Documentation/networking/ip-sysctl.rst (somaxconn)
kernel.numa_balancing = 0 | no page migrations (and their faults) under a running shard | Red Hat tuned profile network-latency; kernel Documentation/admin-guide/sysctl/kernel.rst (numa_balancing)
vm.swappiness <= 1 | no swap-in stalls for brokers on the same host | Confluent Platform docs, Running Kafka in Production (Memory); kernel Documentation/admin-guide/sysctl/vm.rst (swappiness)
host.cpu_governor = performance | no frequency ramp-up on the first records after an idle gap | Red Hat tuned profile latency-performance; kernel Documentation/admin-guide/pm/cpufreq.rst
host.thp_enabled = never | no khugepaged compaction stalls | Red Hat tuned profile network-latency (transparent_hugepages=never)
host.memlock >= 16777216 | glommio locks and registers its I/O memory with io_uring, counted against RLIMIT_MEMLOCK on older kernels | glommio LocalExecutorBuilder::io_memory docs; io_uring_register(2)
host.io_uring = available | glommio runs on io_uring; disabled io_uring (kernel.io_uring_disabled) stops every shard | kernel Documentation/admin-guide/sysctl/kernel.rst (io_uring_disabled); io_uring_setup(2)
host.smt = any | reported only: an SMT sibling's load adds jitter to a shard on the same core; compare with it off | kernel Documentation/admin-guide/hw-vuln/core-scheduling.rst (SMT)
host.nic_irqs = any | reported only: keep NIC interrupts off the shards' cores (see docs/tuning.md) | Red Hat Enterprise Linux Network Performance Tuning Guide (IRQ affinity)
