/* jis.c — what ISO-2022-JP can carry, and the substitutes for the rest.
 *
 * kr_jis_code answers from a 64 Ki table of JIS X 0208 codes built once
 * (pthread_once) by decoding every one of the 94 x 94 codes with glibc's
 * iconv "ISO-2022-JP": no hand-copied JIS table. Two hand-written tables
 * sit on top, each row tested in tests/unit/test_jis.c:
 *   - ms_forms: the code points Microsoft's code pages (CP932, CP50220)
 *     give the glyphs that JIS maps elsewhere. A Windows IME types U+FF5E
 *     FULLWIDTH TILDE for 〜; sending it as 0x2141 (WAVE DASH) shows the
 *     reader the same wavy dash, and Windows decodes 0x2141 back to U+FF5E.
 *   - substs: NEC/IBM extensions (①, ㈱, Ⅲ, ㍻…), half-width katakana
 *     (RFC 1468 forbids them; with a voiced mark they become one full-width
 *     character), and a few others, each to a rendition ISO-2022-JP
 *     carries. Emoji and characters with no sensible stand-in have none.
 * README.md ("ISO-2022-JP") lists the same table for operators. */
#include "jis.h"

#include <errno.h>
#include <iconv.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

static uint16_t jis_of[0x10000]; /* code point -> JIS X 0208 code, 0: none */
static pthread_once_t jis_once = PTHREAD_ONCE_INIT;

/* Microsoft forms -> the JIS code of the glyph they show. */
static const struct {
	uint32_t cp;
	unsigned code;
} ms_forms[] = {
    {0x2014, 0x213D}, /* — EM DASH (Mac's reading of 0x213D; glibc and
                         CP932 read it U+2015 HORIZONTAL BAR) */
    {0x2225, 0x2142}, /* ∥ PARALLEL TO (CP932) for ‖ U+2016 */
    {0xFF0D, 0x215D}, /* － FULLWIDTH HYPHEN-MINUS (CP932) for − U+2212 */
    {0xFF5E, 0x2141}, /* ～ FULLWIDTH TILDE (CP932) for 〜 U+301C */
    {0xFFE0, 0x2171}, /* ￠ FULLWIDTH CENT SIGN (CP932) for ¢ U+00A2 */
    {0xFFE1, 0x2172}, /* ￡ FULLWIDTH POUND SIGN (CP932) for £ U+00A3 */
    {0xFFE2, 0x224C}, /* ￢ FULLWIDTH NOT SIGN (CP932) for ¬ U+00AC */
};

/* Substitutes, sorted by code point (a unit test checks the order). */
static const struct subst {
	uint32_t cp;
	const char *to;
} substs[] = {
    {0x00A0, " "},          /* NO-BREAK SPACE */
    {0x00A5, "￥"},         /* ¥ (JIS X 0201 Roman: sent full-width) */
    {0x2013, "-"},          /* – EN DASH */
    {0x2022, "・"},         /* • BULLET */
    {0x203E, "￣"},         /* ‾ OVERLINE (JIS X 0201 Roman) */
    {0x20AC, "EUR"},        /* € */
    {0x2116, "No."},        /* № */
    {0x2121, "TEL"},        /* ℡ */
    {0x2160, "I"},          /* Ⅰ */
    {0x2161, "II"},         /* Ⅱ */
    {0x2162, "III"},        /* Ⅲ */
    {0x2163, "IV"},         /* Ⅳ */
    {0x2164, "V"},          /* Ⅴ */
    {0x2165, "VI"},         /* Ⅵ */
    {0x2166, "VII"},        /* Ⅶ */
    {0x2167, "VIII"},       /* Ⅷ */
    {0x2168, "IX"},         /* Ⅸ */
    {0x2169, "X"},          /* Ⅹ */
    {0x2170, "i"},          /* ⅰ */
    {0x2171, "ii"},         /* ⅱ */
    {0x2172, "iii"},        /* ⅲ */
    {0x2173, "iv"},         /* ⅳ */
    {0x2174, "v"},          /* ⅴ */
    {0x2175, "vi"},         /* ⅵ */
    {0x2176, "vii"},        /* ⅶ */
    {0x2177, "viii"},       /* ⅷ */
    {0x2178, "ix"},         /* ⅸ */
    {0x2179, "x"},          /* ⅹ */
    {0x2211, "Σ"},          /* ∑ N-ARY SUMMATION */
    {0x2460, "(1)"},        /* ① */
    {0x2461, "(2)"},        /* ② */
    {0x2462, "(3)"},        /* ③ */
    {0x2463, "(4)"},        /* ④ */
    {0x2464, "(5)"},        /* ⑤ */
    {0x2465, "(6)"},        /* ⑥ */
    {0x2466, "(7)"},        /* ⑦ */
    {0x2467, "(8)"},        /* ⑧ */
    {0x2468, "(9)"},        /* ⑨ */
    {0x2469, "(10)"},       /* ⑩ */
    {0x246A, "(11)"},       /* ⑪ */
    {0x246B, "(12)"},       /* ⑫ */
    {0x246C, "(13)"},       /* ⑬ */
    {0x246D, "(14)"},       /* ⑭ */
    {0x246E, "(15)"},       /* ⑮ */
    {0x246F, "(16)"},       /* ⑯ */
    {0x2470, "(17)"},       /* ⑰ */
    {0x2471, "(18)"},       /* ⑱ */
    {0x2472, "(19)"},       /* ⑲ */
    {0x2473, "(20)"},       /* ⑳ */
    {0x3231, "(株)"},       /* ㈱ */
    {0x3232, "(有)"},       /* ㈲ */
    {0x3239, "(代)"},       /* ㈹ */
    {0x32A4, "(上)"},       /* ㊤ */
    {0x32A5, "(中)"},       /* ㊥ */
    {0x32A6, "(下)"},       /* ㊦ */
    {0x32A7, "(左)"},       /* ㊧ */
    {0x32A8, "(右)"},       /* ㊨ */
    {0x32FF, "令和"},       /* ㋿ */
    {0x3303, "アール"},     /* ㌃ */
    {0x330D, "カロリー"},   /* ㌍ */
    {0x3314, "キロ"},       /* ㌔ */
    {0x3318, "グラム"},     /* ㌘ */
    {0x3322, "センチ"},     /* ㌢ */
    {0x3323, "セント"},     /* ㌣ */
    {0x3326, "ドル"},       /* ㌦ */
    {0x3327, "トン"},       /* ㌧ */
    {0x332B, "パーセント"}, /* ㌫ */
    {0x3336, "ヘクタール"}, /* ㌶ */
    {0x333B, "ページ"},     /* ㌻ */
    {0x3349, "ミリ"},       /* ㍉ */
    {0x334A, "ミリバール"}, /* ㍊ */
    {0x334D, "メートル"},   /* ㍍ */
    {0x3351, "リットル"},   /* ㍑ */
    {0x3357, "ワット"},     /* ㍗ */
    {0x337B, "平成"},       /* ㍻ */
    {0x337C, "昭和"},       /* ㍼ */
    {0x337D, "大正"},       /* ㍽ */
    {0x337E, "明治"},       /* ㍾ */
    {0x338E, "mg"},         /* ㎎ */
    {0x338F, "kg"},         /* ㎏ */
    {0x339C, "mm"},         /* ㎜ */
    {0x339D, "cm"},         /* ㎝ */
    {0x339E, "km"},         /* ㎞ */
    {0x33A1, "m2"},         /* ㎡ */
    {0x33C4, "cc"},         /* ㏄ */
    {0x33CD, "K.K."},       /* ㏍ */
    {0x9AD9, "高"},         /* 髙 (IBM extension, "hashigo-daka") */
    {0xFA11, "崎"},         /* 﨑 (IBM extension, "tatsu-saki") */
};

/* Half-width katakana U+FF61..U+FF9F: full-width, and with a following
 * voiced (U+FF9E) or semi-voiced (U+FF9F) mark, the one composed
 * character when JIS X 0208 has it. */
static const struct kana {
	uint32_t cp;
	const char *full, *voiced, *semi;
} kanas[] = {
    {0xFF61, "。", NULL, NULL}, /* ｡ */
    {0xFF62, "「", NULL, NULL}, /* ｢ */
    {0xFF63, "」", NULL, NULL}, /* ｣ */
    {0xFF64, "、", NULL, NULL}, /* ､ */
    {0xFF65, "・", NULL, NULL}, /* ･ */
    {0xFF66, "ヲ", NULL, NULL}, /* ｦ */
    {0xFF67, "ァ", NULL, NULL}, /* ｧ */
    {0xFF68, "ィ", NULL, NULL}, /* ｨ */
    {0xFF69, "ゥ", NULL, NULL}, /* ｩ */
    {0xFF6A, "ェ", NULL, NULL}, /* ｪ */
    {0xFF6B, "ォ", NULL, NULL}, /* ｫ */
    {0xFF6C, "ャ", NULL, NULL}, /* ｬ */
    {0xFF6D, "ュ", NULL, NULL}, /* ｭ */
    {0xFF6E, "ョ", NULL, NULL}, /* ｮ */
    {0xFF6F, "ッ", NULL, NULL}, /* ｯ */
    {0xFF70, "ー", NULL, NULL}, /* ｰ */
    {0xFF71, "ア", NULL, NULL}, /* ｱ */
    {0xFF72, "イ", NULL, NULL}, /* ｲ */
    {0xFF73, "ウ", "ヴ", NULL}, /* ｳ */
    {0xFF74, "エ", NULL, NULL}, /* ｴ */
    {0xFF75, "オ", NULL, NULL}, /* ｵ */
    {0xFF76, "カ", "ガ", NULL}, /* ｶ */
    {0xFF77, "キ", "ギ", NULL}, /* ｷ */
    {0xFF78, "ク", "グ", NULL}, /* ｸ */
    {0xFF79, "ケ", "ゲ", NULL}, /* ｹ */
    {0xFF7A, "コ", "ゴ", NULL}, /* ｺ */
    {0xFF7B, "サ", "ザ", NULL}, /* ｻ */
    {0xFF7C, "シ", "ジ", NULL}, /* ｼ */
    {0xFF7D, "ス", "ズ", NULL}, /* ｽ */
    {0xFF7E, "セ", "ゼ", NULL}, /* ｾ */
    {0xFF7F, "ソ", "ゾ", NULL}, /* ｿ */
    {0xFF80, "タ", "ダ", NULL}, /* ﾀ */
    {0xFF81, "チ", "ヂ", NULL}, /* ﾁ */
    {0xFF82, "ツ", "ヅ", NULL}, /* ﾂ */
    {0xFF83, "テ", "デ", NULL}, /* ﾃ */
    {0xFF84, "ト", "ド", NULL}, /* ﾄ */
    {0xFF85, "ナ", NULL, NULL}, /* ﾅ */
    {0xFF86, "ニ", NULL, NULL}, /* ﾆ */
    {0xFF87, "ヌ", NULL, NULL}, /* ﾇ */
    {0xFF88, "ネ", NULL, NULL}, /* ﾈ */
    {0xFF89, "ノ", NULL, NULL}, /* ﾉ */
    {0xFF8A, "ハ", "バ", "パ"}, /* ﾊ */
    {0xFF8B, "ヒ", "ビ", "ピ"}, /* ﾋ */
    {0xFF8C, "フ", "ブ", "プ"}, /* ﾌ */
    {0xFF8D, "ヘ", "ベ", "ペ"}, /* ﾍ */
    {0xFF8E, "ホ", "ボ", "ポ"}, /* ﾎ */
    {0xFF8F, "マ", NULL, NULL}, /* ﾏ */
    {0xFF90, "ミ", NULL, NULL}, /* ﾐ */
    {0xFF91, "ム", NULL, NULL}, /* ﾑ */
    {0xFF92, "メ", NULL, NULL}, /* ﾒ */
    {0xFF93, "モ", NULL, NULL}, /* ﾓ */
    {0xFF94, "ヤ", NULL, NULL}, /* ﾔ */
    {0xFF95, "ユ", NULL, NULL}, /* ﾕ */
    {0xFF96, "ヨ", NULL, NULL}, /* ﾖ */
    {0xFF97, "ラ", NULL, NULL}, /* ﾗ */
    {0xFF98, "リ", NULL, NULL}, /* ﾘ */
    {0xFF99, "ル", NULL, NULL}, /* ﾙ */
    {0xFF9A, "レ", NULL, NULL}, /* ﾚ */
    {0xFF9B, "ロ", NULL, NULL}, /* ﾛ */
    {0xFF9C, "ワ", NULL, NULL}, /* ﾜ */
    {0xFF9D, "ン", NULL, NULL}, /* ﾝ */
    {0xFF9E, "゛", NULL, NULL}, /* ﾞ */
    {0xFF9F, "゜", NULL, NULL}, /* ﾟ */
};

static void
jis_init(void)
{
	iconv_t cd = iconv_open("UTF-32LE", "ISO-2022-JP");
	unsigned hi, lo;
	size_t i;

	/* glibc's gconv modules missing (a stripped image): nothing but
	 * ASCII is carried, so every report goes in UTF-8 */
	if (cd == (iconv_t)-1)
		return;
	for (hi = 0x21; hi <= 0x7e; hi++)
		for (lo = 0x21; lo <= 0x7e; lo++) {
			char in[5] = {0x1b, '$', 'B', (char)hi, (char)lo};
			unsigned char outb[8];
			char *ip = in, *op = (char *)outb;
			size_t il = sizeof(in), ol = sizeof(outb);
			uint32_t cp;

			iconv(cd, NULL, NULL, NULL, NULL);
			if (iconv(cd, &ip, &il, &op, &ol) == (size_t)-1 ||
			    ol != sizeof(outb) - 4)
				continue;
			cp = (uint32_t)outb[0] | (uint32_t)outb[1] << 8 |
			     (uint32_t)outb[2] << 16 | (uint32_t)outb[3] << 24;
			if (cp < 0x10000 && jis_of[cp] == 0)
				jis_of[cp] = (uint16_t)(hi << 8 | lo);
		}
	iconv_close(cd);
	for (i = 0; i < KR_NELEM(ms_forms); i++)
		if (jis_of[ms_forms[i].cp] == 0)
			jis_of[ms_forms[i].cp] = (uint16_t)ms_forms[i].code;
}

unsigned
kr_jis_code(uint32_t cp)
{
	if (cp < 0x80)
		return cp == 0 || cp == 0x1b || cp == 0x0e || cp == 0x0f ? 0
		                                                         : cp;
	if (cp >= 0x10000)
		return 0;
	pthread_once(&jis_once, jis_init);
	return jis_of[cp];
}

uint32_t
kr_jis_utf8(const unsigned char *s, size_t n, size_t *len_out)
{
	uint32_t c = s[0];
	size_t len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4, i;

	if (len > n)
		len = n;
	if (len > 1)
		c &= len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07;
	for (i = 1; i < len; i++)
		c = c << 6 | (s[i] & 0x3f);
	*len_out = len;
	return c;
}

static int
subst_cmp(const void *k, const void *e)
{
	uint32_t a = *(const uint32_t *)k, b = ((const struct subst *)e)->cp;

	return a < b ? -1 : a > b;
}

const char *
kr_jis_subst(const char *s, size_t n, size_t *used_out)
{
	const unsigned char *p = (const unsigned char *)s;
	const struct subst *e;
	size_t k, k2;
	uint32_t cp = kr_jis_utf8(p, n, &k), next;

	*used_out = k;
	if (cp >= 0xFF61 && cp <= 0xFF9F) {
		const struct kana *kn = &kanas[cp - 0xFF61];

		if (k < n) {
			next = kr_jis_utf8(p + k, n - k, &k2);
			if ((next == 0xFF9E && kn->voiced) ||
			    (next == 0xFF9F && kn->semi)) {
				*used_out = k + k2;
				return next == 0xFF9E ? kn->voiced : kn->semi;
			}
		}
		return kn->full;
	}
	e = bsearch(&cp, substs, KR_NELEM(substs), sizeof(substs[0]),
	            subst_cmp);
	return e ? e->to : NULL;
}

size_t
kr_jis_fix(const char *s, size_t n, bool substitute, struct kr_buf *out,
           kr_jis_issue_fn fn, void *ctx)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, start = 0, k, bad = 0;
	const char *to;
	uint32_t cp;

	while (i < n) {
		if (p[i] >= 0x80 || kr_jis_code(p[i]) == 0) {
			cp = kr_jis_utf8(p + i, n - i, &k);
			if (kr_jis_code(cp) == 0) {
				to = kr_jis_subst(s + i, n - i, &k);
				if (fn)
					fn(ctx, i, k, cp, to);
				if (to == NULL || !substitute)
					bad++;
				if (to != NULL && substitute) {
					if (out &&
					    (kr_buf_append(out, s + start,
					                   i - start) < 0 ||
					     kr_buf_puts(out, to) < 0))
						abort(); /* unbounded */
					start = i + k;
				}
			}
			i += k;
		} else {
			i++;
		}
	}
	if (out && kr_buf_append(out, s + start, n - start) < 0)
		abort();
	return bad;
}

struct lint {
	const char *name, *data;
	struct kr_buf *out;
	size_t line, col, pos; /* position reached so far */
	size_t n, none;
};

static void
lint_issue(void *ctx, size_t off, size_t len, uint32_t cp, const char *subst)
{
	struct lint *l = ctx;
	size_t k;

	/* advance line and column (in characters) to off */
	while (l->pos < off) {
		if (l->data[l->pos] == '\n') {
			l->line++;
			l->col = 1;
			l->pos++;
			continue;
		}
		(void)kr_jis_utf8((const unsigned char *)l->data + l->pos,
		                  off - l->pos, &k);
		l->pos += k;
		l->col++;
	}
	l->n++;
	if (subst == NULL)
		l->none++;
	if (kr_buf_printf(l->out, "%s:%zu:%zu: U+%04X ", l->name, l->line,
	                  l->col, (unsigned)cp) < 0 ||
	    (cp >= 0x20 && (kr_buf_putc(l->out, '\'') < 0 ||
	                    kr_buf_append(l->out, l->data + off, len) < 0 ||
	                    kr_buf_puts(l->out, "' ") < 0)) ||
	    kr_buf_printf(l->out, "cannot be sent as ISO-2022-JP (%s%s)\n",
	                  subst ? "substitute: " : "no substitute",
	                  subst ? subst : "") < 0)
		abort(); /* unbounded */
}

size_t
kr_jis_lint(const char *name, const char *data, size_t n, struct kr_buf *out,
            size_t *n_none_out)
{
	struct lint l = {
	    .name = name, .data = data, .out = out, .line = 1, .col = 1};

	if (n >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0) {
		l.data = data += 3; /* a BOM is not part of the text */
		n -= 3;
	}
	(void)kr_jis_fix(data, n, true, NULL, lint_issue, &l);
	if (n_none_out)
		*n_none_out = l.none;
	return l.n;
}

size_t
kr_jis_test_ms_forms(const uint32_t **cps_out, const unsigned **codes_out)
{
	static uint32_t cps[KR_NELEM(ms_forms)];
	static unsigned codes[KR_NELEM(ms_forms)];
	size_t i;

	for (i = 0; i < KR_NELEM(ms_forms); i++) {
		cps[i] = ms_forms[i].cp;
		codes[i] = ms_forms[i].code;
	}
	*cps_out = cps;
	*codes_out = codes;
	return KR_NELEM(ms_forms);
}

size_t
kr_jis_test_rows(const uint32_t **cps_out, const char *const **to_out)
{
	static uint32_t cps[KR_NELEM(substs) + KR_NELEM(kanas)];
	static const char *tos[KR_NELEM(substs) + KR_NELEM(kanas)];
	size_t i, n = 0;

	for (i = 0; i < KR_NELEM(substs); i++, n++) {
		cps[n] = substs[i].cp;
		tos[n] = substs[i].to;
	}
	for (i = 0; i < KR_NELEM(kanas); i++, n++) {
		cps[n] = kanas[i].cp;
		tos[n] = kanas[i].full;
	}
	*cps_out = cps;
	*to_out = tos;
	return n;
}
