#!/usr/bin/python3
"""bench_input.py DIR N [BYTES] — the input of bench/kairand.sh and bench/postfix.sh:
DIR/subs.csv with N subscribers (reader0000000@example.net …, a Japanese
name each) and DIR/report.md, a ~10 KB Japanese report for list "bench"
(composed by kairan into ~29 KB messages: text + HTML, base64); BYTES
sets the Markdown's size (default 9000; 3000 composes to ~10.5 KB)."""
import sys

d, n = sys.argv[1], int(sys.argv[2])
size = int(sys.argv[3]) if len(sys.argv) > 3 else 9000
with open(d + "/subs.csv", "w") as f:
    f.write("email,name\n")
    for i in range(n):
        f.write("reader%07d@example.net,読者%d\n" % (i, i))
para = ("今月は、取引先を装ったメールでマルウェアを送り込む手口が再び増えました。"
        "添付ファイルを開く前に送信元を確かめ、マクロを有効にしないでください。"
        "詳しくは [解説ページ](https://example.jp/advisory) をご覧ください。\n\n")
body = "# 今月の脅威動向\n\n"
while len(body.encode()) < size:
    body += para
with open(d + "/report.md", "w") as f:
    f.write("---\nsubject: 第12号 SIPS セキュリティレポート：標的型メールの新しい手口\n"
            "list: bench\npreheader: 今月の要点\n---\n" + body)
