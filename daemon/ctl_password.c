/* kairanctl password-hash: the dashboard login's hash (admin.password_file)
 * from a password read on stdin, so it never shows in argv or a shell's
 * history. */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "ctl.h"

static int ctl_password_hash(struct ctl *c, int argc, char **argv);
CTL_VERB(password_hash, "password-hash", ctl_password_hash,
         "hash a dashboard password read on stdin (admin.password_file)");

static int
ctl_password_hash(struct ctl *c, int argc, char **argv)
{
	char pass[1024], hash[crypto_pwhash_STRBYTES];
	size_t n;
	int r = CTL_FAIL;

	(void)c;
	if (argc > 1) {
		fprintf(argc == 2 && strcmp(argv[1], "--help") == 0 ? stdout
		                                                    : stderr,
		        "usage: kairanctl password-hash < PASSWORD\n"
		        "Prints the line for admin.password_file: an Argon2id "
		        "hash (libsodium crypto_pwhash_str) of the first line "
		        "of stdin.\n");
		return argc == 2 && strcmp(argv[1], "--help") == 0 ? CTL_OK
		                                                   : CTL_USAGE;
	}
	if (sodium_init() < 0) {
		ctl_error("libsodium failed to start");
		return CTL_FAIL;
	}
	if (fgets(pass, sizeof(pass), stdin) == NULL)
		pass[0] = '\0';
	n = strcspn(pass, "\r\n");
	pass[n] = '\0';
	if (n < 8) {
		ctl_error("password-hash: expected a password of at least 8 "
		          "characters on stdin");
		r = CTL_USAGE;
		goto out;
	}
	if (crypto_pwhash_str(hash, pass, n, crypto_pwhash_OPSLIMIT_INTERACTIVE,
	                      crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
		ctl_error("password-hash: out of memory");
		goto out;
	}
	printf("%s\n", hash);
	r = CTL_OK;
out:
	sodium_memzero(pass, sizeof(pass));
	return r;
}
