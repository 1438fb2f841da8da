#!/usr/bin/env python3
"""Inputs of scripts/bench-bgp.sh: N /128 routes out of 2001:db8:1::/108 as
Herald manifests (one LoadBalancer Service per address) or as an MRT
TABLE_DUMP_V2 file (RFC 6396) for `gobgp mrt inject global`."""
import ipaddress
import struct
import sys

BASE = int(ipaddress.IPv6Address("2001:db8:1::"))
NEXT_HOP = ipaddress.IPv6Address("2001:db8:ff::2").packed


def addresses(n):
    return [ipaddress.IPv6Address(BASE + i + 1) for i in range(n)]


def manifests(n, out):
    with open(out, "w") as f:
        for a in addresses(n):
            f.write(
                "---\napiVersion: v1\nkind: Service\n"
                f"metadata: {{name: s{int(a) - BASE}, namespace: bench}}\n"
                "spec: {type: LoadBalancer, ipFamilies: [IPv6], ports: [{port: 80}]}\n"
                f"status: {{loadBalancer: {{ingress: [{{ip: \"{a}\"}}]}}}}\n"
            )


def mrt(n, out):
    def record(subtype, body):
        return struct.pack("!IHHI", 0, 13, subtype, len(body)) + body

    # PEER_INDEX_TABLE: collector id, empty view name, one IPv6 peer with a
    # 4-octet AS (peer type 0b11).
    peer = struct.pack("!B4s16sI", 3, bytes([192, 0, 2, 2]), NEXT_HOP, 4200000001)
    data = [record(1, bytes([192, 0, 2, 2]) + struct.pack("!HH", 0, 1) + peer)]
    # Attributes: ORIGIN IGP, empty AS_PATH, MP_REACH_NLRI with the next
    # hop and no NLRI (GoBGP reads the full form, not RFC 6396 §4.3.4's
    # abbreviated one).
    attrs = bytes([0x40, 1, 1, 0, 0x40, 2, 0])
    attrs += bytes([0x80, 14, 21, 0, 2, 1, 16]) + NEXT_HOP + bytes([0])
    # `gobgp mrt inject` (3.10) can exit before gobgpd has read the end of
    # its stream, losing a tail of a few hundred routes: the routes come
    # again after themselves (at least 5,000 records of them) as that tail.
    routes = addresses(n)
    pad = [routes[i % n] for i in range(max(n, 5000))] if n else []
    for seq, a in enumerate(routes + pad):
        body = struct.pack("!IB", seq, 128) + a.packed
        body += struct.pack("!HHIH", 1, 0, 0, len(attrs)) + attrs
        data.append(record(4, body))
    with open(out, "wb") as f:
        f.write(b"".join(data))


if __name__ == "__main__":
    kind, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    {"manifests": manifests, "mrt": mrt}[kind](n, out)
