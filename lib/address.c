/* address.c — one addr-spec, checked and normalised.
 *
 * What is accepted, and why:
 * - a single addr-spec: no display name, no <>, no comments, no list;
 * - local part: an RFC 5322 dot-atom of atext, or a quoted-string of
 *   printable ASCII (with \-escapes). RFC 6531 (SMTPUTF8) local parts are
 *   accepted only as a dot-atom whose non-ASCII characters are letters;
 *   full-width ASCII forms (what an IME types) are refused, because nobody
 *   means them in an address;
 * - domain: LDH labels, IDN converted to A-labels with libidn2 (TR46
 *   non-transitional, NFC input). Address literals ([192.0.2.1]) are
 *   refused: a newsletter has no use for them and they dodge per-domain
 *   limits and bounce handling;
 * - RFC 5321 lengths: local part 64, domain 253, whole address 254 octets,
 *   measured on the normalised form.
 * Normalisation: the domain is lower-cased; a quoted local part that needs
 * no quotes loses them and redundant escapes are dropped; otherwise the
 * local part is kept as typed (its case matters to the receiving host). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* memmem, newlocale; the Makefile sets it too */
#endif
#include "address.h"

#include <idn2.h>
#include <locale.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <wctype.h>

#include "err.h"

#define LOCAL_MAX 64
#define DOMAIN_MAX 253
#define ADDRESS_MAX 254
/* Input past this is refused before any work: even IDN cannot shrink it
 * back under 254 octets. */
#define INPUT_MAX 1024
#define IDEOGRAPHIC_SPACE "\xe3\x80\x80" /* U+3000 */

static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;
static locale_t utf8_locale;

static void
utf8_locale_init(void)
{
	/* glibc's C.UTF-8 classifies all of Unicode and needs no locale-gen;
	 * without it non-ASCII local parts are refused. */
	utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

static bool
is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Decodes one UTF-8 sequence at s (n bytes left). Returns its length and
 * the code point in *cp, or 0 when it is malformed, overlong, a surrogate
 * or past U+10FFFF. */
static size_t
utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len, i;
	uint32_t c, min;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	} else if ((s[0] & 0xe0) == 0xc0) {
		len = 2, c = s[0] & 0x1f, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3, c = s[0] & 0x0f, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4, c = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

static bool
is_dot_atom_ascii(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (!is_atext((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

/* Checks the characters of the whole input, before any parsing, so the
 * reason given is the most telling one. */
static int
check_chars(const unsigned char *s, size_t n, struct kr_err *err)
{
	size_t i;
	bool quoted = false, angle = false, comment = false, list = false;
	bool space = false;

	for (i = 0; i < n; i++) {
		if (s[i] == '\0')
			return kr_err_set(err, KR_ERR_INVALID,
			                  "the address contains a NUL byte");
		if (s[i] == '\r' || s[i] == '\n')
			return kr_err_set(err, KR_ERR_INVALID,
			                  "the address contains a line break");
		if (s[i] < 0x20 || s[i] == 0x7f)
			return kr_err_set(
			    err, KR_ERR_INVALID,
			    "the address contains a control character");
	}
	/* An IME's full-width @ would otherwise read as "no @ at all". */
	if (memmem(s, n, "\xef\xbc\xa0", 3) != NULL)
		return kr_err_set(
		    err, KR_ERR_INVALID,
		    "the address contains a full-width @; type it in "
		    "half-width (ASCII) characters");
	for (i = 0; i < n; i++) {
		if (quoted) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				quoted = false;
			continue;
		}
		if (s[i] == '"')
			quoted = true;
		else if (s[i] == '<' || s[i] == '>')
			angle = true;
		else if (s[i] == '(' || s[i] == ')')
			comment = true;
		else if (s[i] == ',' || s[i] == ';')
			list = true;
		else if (s[i] == ' ')
			space = true;
	}
	if (angle)
		return kr_err_set(
		    err, KR_ERR_INVALID,
		    "give the address alone, without a name or <>");
	if (comment)
		return kr_err_set(
		    err, KR_ERR_INVALID,
		    "comments in parentheses are not allowed in the address");
	if (list)
		return kr_err_set(err, KR_ERR_INVALID, "give one address only");
	if (space)
		return kr_err_set(err, KR_ERR_INVALID,
		                  "the address contains a space");
	return 0;
}

/* Parses a quoted local part at s[0] == '"'. Writes the unescaped text to
 * buf (cap bytes) and returns the bytes consumed, or 0 with err set. */
static size_t
parse_quoted(const char *s, size_t n, char *buf, size_t cap, size_t *len_out,
             struct kr_err *err)
{
	size_t i = 1, len = 0;
	unsigned char c;

	while (i < n && s[i] != '"') {
		c = (unsigned char)s[i];
		if (c == '\\') {
			if (i + 1 >= n)
				break;
			c = (unsigned char)s[++i];
		}
		if (c >= 0x80) {
			kr_err_set(err, KR_ERR_INVALID,
			           "a quoted local part may hold only ASCII "
			           "characters");
			return 0;
		}
		if (len + 1 >= cap) {
			kr_err_set(err, KR_ERR_INVALID,
			           "the part before the @ is longer than 64 "
			           "characters");
			return 0;
		}
		buf[len++] = (char)c;
		i++;
	}
	if (i >= n) {
		kr_err_set(err, KR_ERR_INVALID,
		           "the quoted local part has no closing quote");
		return 0;
	}
	if (len == 0) {
		kr_err_set(err, KR_ERR_INVALID, "the local part is empty");
		return 0;
	}
	buf[len] = '\0';
	*len_out = len;
	return i + 1;
}

/* Checks a dot-atom local part (ASCII atext, or UTF-8 letters). */
static int
check_dot_atom(const char *s, size_t n, struct kr_err *err)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i, l;
	uint32_t cp;

	if (n == 0)
		return kr_err_set(err, KR_ERR_INVALID,
		                  "the part before the @ is missing");
	if (s[0] == '.' || s[n - 1] == '.' || memmem(s, n, "..", 2) != NULL)
		return kr_err_set(
		    err, KR_ERR_INVALID,
		    "the part before the @ starts or ends with a dot, or has "
		    "two dots in a row");
	for (i = 0; i < n; i += l) {
		l = 1;
		if (u[i] == '.' || is_atext(u[i]))
			continue;
		if (u[i] < 0x80)
			return kr_err_set(
			    err, KR_ERR_INVALID,
			    "the part before the @ contains '%c', which is "
			    "not allowed there",
			    s[i]);
		if ((l = utf8_decode(u + i, n - i, &cp)) == 0)
			return kr_err_set(err, KR_ERR_INVALID,
			                  "the address is not valid UTF-8");
		if (cp >= 0xff01 && cp <= 0xff5e)
			return kr_err_set(
			    err, KR_ERR_INVALID,
			    "the address contains full-width characters; "
			    "type it in half-width (ASCII) characters");
		pthread_once(&utf8_once, utf8_locale_init);
		if (utf8_locale == (locale_t)0 ||
		    !iswalpha_l((wint_t)cp, utf8_locale))
			return kr_err_set(
			    err, KR_ERR_INVALID,
			    "the part before the @ contains a character "
			    "that is not allowed there (U+%04X)",
			    (unsigned)cp);
	}
	return 0;
}

/* Checks an ASCII domain and lower-cases it into out. */
static int
check_domain(const char *d, size_t n, char *out, struct kr_err *err)
{
	size_t i, label = 0, labels = 1;
	bool digits = true;
	char c;

	if (n > DOMAIN_MAX)
		return kr_err_set(err, KR_ERR_INVALID,
		                  "the domain is longer than 253 characters");
	if (d[0] == '.' || memmem(d, n, "..", 2) != NULL)
		return kr_err_set(
		    err, KR_ERR_INVALID,
		    "the domain starts with a dot or has two dots in a row");
	if (d[n - 1] == '.')
		return kr_err_set(err, KR_ERR_INVALID,
		                  "the domain ends with a dot");
	for (i = 0; i < n; i++) {
		c = d[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		out[i] = c;
		if (c == '.') {
			labels++;
			label = 0;
			digits = true;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return kr_err_set(
			    err, KR_ERR_INVALID,
			    "the domain contains '%c', which is not allowed "
			    "there",
			    c);
		if (c == '-' && (label == 0 || i + 1 == n || d[i + 1] == '.'))
			return kr_err_set(
			    err, KR_ERR_INVALID,
			    "a part of the domain starts or ends with a "
			    "hyphen");
		if (!(c >= '0' && c <= '9'))
			digits = false;
		if (++label > 63)
			return kr_err_set(
			    err, KR_ERR_INVALID,
			    "a part of the domain is longer than 63 "
			    "characters");
	}
	out[n] = '\0';
	if (labels < 2)
		return kr_err_set(
		    err, KR_ERR_INVALID,
		    "the domain needs at least one dot (like example.jp)");
	if (digits)
		return kr_err_set(
		    err, KR_ERR_INVALID,
		    "the domain ends in a number; IP addresses are not "
		    "accepted");
	return 0;
}

int
kr_address_normalize(const char *in, size_t len, char out[KR_ADDRESS_MAX],
                     struct kr_err *err)
{
	char local[INPUT_MAX + 1], dom[INPUT_MAX + 1], *ace = NULL;
	const char *s = in, *at, *d, *dsrc;
	size_t n = len, llen = 0, dlen, used, i, l;
	bool quoted = false, ascii = true, alabel = false;
	uint32_t cp;
	int rc = -1, r;

	out[0] = '\0';
	/* Space, tab, and the ideographic space a Japanese IME types. CR and
	 * LF are not trimmed but refused: they have no business in a field
	 * that ends up in a header. */
	for (;;) {
		if (n > 0 && (s[0] == ' ' || s[0] == '\t'))
			s++, n--;
		else if (n >= 3 && memcmp(s, IDEOGRAPHIC_SPACE, 3) == 0)
			s += 3, n -= 3;
		else
			break;
	}
	for (;;) {
		if (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			n--;
		else if (n >= 3 && memcmp(s + n - 3, IDEOGRAPHIC_SPACE, 3) == 0)
			n -= 3;
		else
			break;
	}
	if (n == 0) {
		kr_err_set(err, KR_ERR_INVALID, "the address is empty");
		goto out;
	}
	if (n > INPUT_MAX) {
		kr_err_set(err, KR_ERR_INVALID,
		           "the address is longer than 254 characters");
		goto out;
	}
	if (check_chars((const unsigned char *)s, n, err) < 0)
		goto out;

	/* The local part. */
	if (s[0] == '"') {
		used = parse_quoted(s, n, local, LOCAL_MAX + 1, &llen, err);
		if (used == 0)
			goto out;
		if (used >= n || s[used] != '@') {
			kr_err_set(err, KR_ERR_INVALID,
			           used >= n
			               ? "the @ sign and the domain are missing"
			               : "the quoted local part must be "
			                 "followed by @");
			goto out;
		}
		quoted = !is_dot_atom_ascii(local, llen);
		at = s + used;
	} else {
		if ((at = memchr(s, '@', n)) == NULL) {
			kr_err_set(err, KR_ERR_INVALID,
			           "the @ sign is missing");
			goto out;
		}
		llen = (size_t)(at - s);
		if (check_dot_atom(s, llen, err) < 0)
			goto out;
		if (llen > LOCAL_MAX) {
			kr_err_set(err, KR_ERR_INVALID,
			           "the part before the @ is longer than 64 "
			           "characters");
			goto out;
		}
		memcpy(local, s, llen);
		local[llen] = '\0';
	}

	/* The domain. */
	d = at + 1;
	dlen = n - (size_t)(d - s);
	if (dlen == 0) {
		kr_err_set(err, KR_ERR_INVALID, "the domain part is missing");
		goto out;
	}
	if (memchr(d, '@', dlen) != NULL) {
		kr_err_set(err, KR_ERR_INVALID,
		           "the address contains more than one @");
		goto out;
	}
	if (d[0] == '[') {
		kr_err_set(
		    err, KR_ERR_INVALID,
		    "address literals like [192.0.2.1] are not accepted; "
		    "use a domain name");
		goto out;
	}
	for (i = 0; i < dlen; i++) {
		if ((unsigned char)d[i] >= 0x80)
			ascii = false;
		/* An A-label typed as such is checked by idn2 as well. */
		if ((i == 0 || d[i - 1] == '.') && dlen - i >= 4 &&
		    strncasecmp(d + i, "xn--", 4) == 0)
			alabel = true;
	}
	dsrc = d;
	if (!ascii || alabel) {
		/* Valid UTF-8 first: idn2 would say less clearly. */
		for (i = 0; i < dlen; i += l) {
			l = utf8_decode((const unsigned char *)d + i, dlen - i,
			                &cp);
			if (l == 0) {
				kr_err_set(err, KR_ERR_INVALID,
				           "the address is not valid UTF-8");
				goto out;
			}
		}
		memcpy(dom, d, dlen);
		dom[dlen] = '\0';
		r = idn2_to_ascii_8z(dom, &ace,
		                     IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
		if (r != IDN2_OK) {
			kr_err_set(
			    err, KR_ERR_INVALID,
			    "the domain is not a valid international domain "
			    "name (%s)",
			    idn2_strerror(r));
			goto out;
		}
		dsrc = ace;
		dlen = strlen(ace);
		if (dlen == 0 || dlen > INPUT_MAX) {
			kr_err_set(err, KR_ERR_INVALID,
			           "the domain is longer than 253 characters");
			goto out;
		}
	}
	if (check_domain(dsrc, dlen, dom, err) < 0)
		goto out;

	/* Assemble, quoting the local part only when it must be. */
	{
		char lq[2 * LOCAL_MAX + 3];
		size_t q = 0;

		if (quoted) {
			lq[q++] = '"';
			for (i = 0; i < llen; i++) {
				if (local[i] == '"' || local[i] == '\\')
					lq[q++] = '\\';
				lq[q++] = local[i];
			}
			lq[q++] = '"';
		} else {
			memcpy(lq, local, llen);
			q = llen;
		}
		if (q > LOCAL_MAX) {
			kr_err_set(err, KR_ERR_INVALID,
			           "the part before the @ is longer than 64 "
			           "characters");
			goto out;
		}
		if (q + 1 + dlen > ADDRESS_MAX) {
			kr_err_set(err, KR_ERR_INVALID,
			           "the address is longer than 254 characters");
			goto out;
		}
		memcpy(out, lq, q);
		out[q] = '@';
		memcpy(out + q + 1, dom, dlen + 1);
	}
	rc = 0;
out:
	idn2_free(ace);
	return rc;
}

const char *
kr_address_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at != NULL ? at + 1 : addr + strlen(addr);
}
