"""A tiny authoritative DNS server over UDP (dnspython builds and parses
the messages) for tests that need real lookups. Records come from a JSON
file; two forms of value per name:
  {"name.": ["string", "string"], ...}   one TXT record of these
                                         character-strings (test_dkim.py)
  {"name.": {"TXT": [["s1", "s2"], "one string"], "A": ["192.0.2.1"],
             "AAAA": [...], "MX": ["10 mx.example."], "PTR": ["h.example."],
             "CNAME": ["other.example."]}}
                                         any records, each type a list
A name that is not there: NXDOMAIN; a name without the type asked for: no
data (NOERROR, empty answer). A CNAME is answered for any type (the
resolver follows it). The file is re-read when it changes, so a test can
swap zones while the server runs. --silent: read queries, never answer (a
DNS server that is down but whose port is open). Run it on a free port
(--port P; kairanctl doctor's dns.resolver: 127.0.0.1:P) or in a network
namespace of its own on port 53 (unshare -n; see test_dkim.py).

usage: dns_server.py --records FILE --ready FILE [--port 53] [--silent]"""
import argparse
import json
import os
import socket

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


def txt_text(v):
    """One TXT record: a list of character-strings, or one string (cut
    into strings of 255 bytes, as a zone file would need)."""
    parts = v if isinstance(v, list) else [v[i:i + 255] for i in
                                           range(0, max(len(v), 1), 255)]
    return " ".join('"%s"' % p.replace("\\", "\\\\").replace('"', '\\"')
                    for p in parts)


class Zone:
    def __init__(self, path):
        self.path = path
        self.mtime = None
        self.records = {}

    def get(self):
        try:
            m = os.stat(self.path).st_mtime_ns
        except OSError:
            return self.records
        if m != self.mtime:
            with open(self.path) as f:
                raw = json.load(f)
            self.records = {k.lower().rstrip(".") + ".": v
                            for k, v in raw.items()}
            self.mtime = m
        return self.records


def answer(r, qname, qtype, recs):
    if isinstance(recs, list):  # the old form: one TXT record
        recs = {"TXT": [recs]}
    if "CNAME" in recs and qtype != dns.rdatatype.CNAME:
        r.answer.append(dns.rrset.from_text(qname, 300, "IN", "CNAME",
                                            *recs["CNAME"]))
        return
    tname = dns.rdatatype.to_text(qtype)
    vals = recs.get(tname)
    if not vals:
        return
    if tname == "TXT":
        vals = [txt_text(v) for v in vals]
    r.answer.append(dns.rrset.from_text(qname, 300, "IN", tname, *vals))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--silent", action="store_true")
    a = ap.parse_args()
    zone = Zone(a.records)
    zone.get()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", a.port))
    with open(a.ready, "w") as f:
        f.write("ready\n")
    while True:
        data, peer = s.recvfrom(4096)
        if a.silent:
            continue
        try:
            q = dns.message.from_wire(data)
        except Exception:
            continue
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        qs = q.question[0] if q.question else None
        name = qs.name.to_text().lower() if qs is not None else ""
        try:
            records = zone.get()
        except (OSError, ValueError):
            records = zone.records
        if qs is None or name not in records:
            r.set_rcode(dns.rcode.NXDOMAIN)
        else:
            try:
                answer(r, qs.name, qs.rdtype, records[name])
            except Exception:  # a bad zone entry: SERVFAIL, keep serving
                r = dns.message.make_response(q)
                r.set_rcode(dns.rcode.SERVFAIL)
        s.sendto(r.to_wire(), peer)


if __name__ == "__main__":
    main()
