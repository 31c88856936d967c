"""The nemesis's lossy link where the kernel has no `tc netem` (crates/cli/tests/cluster/net.rs).

Holds every packet routed into a TUN device for a fixed delay, drops a share of them at
random (from a seed), and hands the rest back to the kernel in order, which forwards
them on. Prints `ready` once attached; on SIGTERM prints `held N dropped M` and exits.
Usage: delay.py DEVICE DELAY_MS LOSS_PERCENT SEED
"""
import collections, fcntl, os, random, select, signal, struct, sys, time

TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
dev, delay, loss, seed = sys.argv[1], float(sys.argv[2]) / 1000, float(sys.argv[3]) / 100, int(sys.argv[4])
rng = random.Random(seed)
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TUN | IFF_NO_PI))
counts = {"held": 0, "dropped": 0}


def report(*_):
    print(f"held {counts['held']} dropped {counts['dropped']}", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, report)
print("ready", flush=True)
held = collections.deque()
while True:
    wait = max(0.0, held[0][0] - time.monotonic()) if held else None
    readable, _, _ = select.select([fd], [], [], wait)
    if readable:
        packet = os.read(fd, 65536)
        if rng.random() >= loss:
            held.append((time.monotonic() + delay, packet))
            counts["held"] += 1
        else:
            counts["dropped"] += 1
    now = time.monotonic()
    while held and held[0][0] <= now:
        os.write(fd, held.popleft()[1])
