"""A tiny authoritative DNS server over UDP (dnspython builds and parses
the messages) for tests that need real lookups: answers TXT queries from a
JSON file {"name.": ["string", "string"], ...} (character-strings of one
record), NXDOMAIN for other names. Run it in a network namespace of its
own (unshare -n) so port 53 on 127.0.0.1 is free; see test_dkim.py.

usage: dns_server.py --records FILE --ready FILE [--port 53]"""
import argparse
import json
import socket

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--port", type=int, default=53)
    a = ap.parse_args()
    with open(a.records) as f:
        records = {k.lower().rstrip(".") + ".": v
                   for k, v in json.load(f).items()}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", a.port))
    with open(a.ready, "w") as f:
        f.write("ready\n")
    while True:
        data, peer = s.recvfrom(4096)
        try:
            q = dns.message.from_wire(data)
        except Exception:
            continue
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        qs = q.question[0] if q.question else None
        name = qs.name.to_text().lower() if qs is not None else ""
        if qs is None or name not in records:
            r.set_rcode(dns.rcode.NXDOMAIN)
        elif qs.rdtype == dns.rdatatype.TXT:
            text = " ".join('"%s"' % p for p in records[name])
            r.answer.append(dns.rrset.from_text(qs.name, 300, "IN", "TXT",
                                                text))
        s.sendto(r.to_wire(), peer)


if __name__ == "__main__":
    main()
