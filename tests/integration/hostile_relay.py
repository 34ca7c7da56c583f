#!/usr/bin/python3
"""An SMTP relay that lies, for the transport's desync tests. Plain
sockets, one thread per connection; it speaks enough SMTP to take mail
from libesmtp and misbehaves in one way, chosen with --mode:

  greeting-extra   the greeting is followed by two stray "250" lines
  data-250         DATA is answered "250 ok" instead of 354 (the body is
                   never asked for)
  extra-250-dot    each message's dot gets two "250" replies
  drip-dot         the reply to each dot is sent a byte every 0.4 s
  drip-greeting    the greeting is sent a byte every 0.4 s
  early-250        DATA gets "354" and, in the same write, "250 queued"
                   before any of the body came
  none             a correct relay (the control)

Every message whose whole body (up to its dot) arrived is counted: one
line "BODY <rcpt>" in DIR/bodies.txt. --pipelining offers PIPELINING.
Prints READY once listening.

Usage: hostile_relay.py --port P --dir DIR --mode M [--pipelining]"""
import argparse
import os
import socket
import sys
import threading
import time


def serve(conn, a):
    f = conn.makefile("rb")
    bodies = open(os.path.join(a.dir, "bodies.txt"), "a", buffering=1)

    def send(b):
        conn.sendall(b)

    def drip(b):
        for i in range(len(b)):
            conn.sendall(b[i:i + 1])
            time.sleep(0.4)

    try:
        greet = b"220 hostile ESMTP\r\n"
        if a.mode == "greeting-extra":
            send(greet + b"250 ok\r\n250 ok\r\n")
        elif a.mode == "drip-greeting":
            drip(greet)
        else:
            send(greet)
        rcpt = None
        n = 0
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line.strip().upper()
            if cmd.startswith(b"EHLO"):
                ext = b"250-hostile\r\n"
                if a.pipelining:
                    ext += b"250-PIPELINING\r\n"
                send(ext + b"250 8BITMIME\r\n")
            elif cmd.startswith(b"HELO"):
                send(b"250 hostile\r\n")
            elif cmd.startswith(b"MAIL"):
                send(b"250 2.1.0 ok\r\n")
            elif cmd.startswith(b"RCPT"):
                rcpt = line.strip()[8:].strip(b"<>").decode("ascii", "replace")
                send(b"250 2.1.5 ok\r\n")
            elif cmd == b"DATA":
                if a.mode == "data-250":
                    send(b"250 2.0.0 queued without a body\r\n")
                    continue
                if a.mode == "early-250":
                    send(b"354 go\r\n250 2.0.0 queued early\r\n")
                else:
                    send(b"354 go ahead\r\n")
                while True:
                    body = f.readline()
                    if not body:
                        return
                    if body == b".\r\n":
                        break
                n += 1
                bodies.write("BODY %s\n" % rcpt)
                reply = b"250 2.0.0 queued as H%d\r\n" % n
                if a.mode == "early-250":
                    continue  # its "reply" went before the body
                if a.mode == "extra-250-dot":
                    send(reply + b"250 2.0.0 and again\r\n")
                elif a.mode == "drip-dot":
                    drip(reply)
                else:
                    send(reply)
            elif cmd == b"RSET" or cmd == b"NOOP":
                send(b"250 ok\r\n")
            elif cmd == b"QUIT":
                send(b"221 bye\r\n")
                return
            else:
                send(b"502 5.5.2 what\r\n")
    except OSError:
        pass
    finally:
        bodies.close()
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--mode", required=True)
    ap.add_argument("--pipelining", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", a.port))
    srv.listen(16)
    print("READY", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn, a), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
