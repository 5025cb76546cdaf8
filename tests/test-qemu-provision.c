/* SPDX-License-Identifier: MIT */
/*
 * Provisioning under real QEMU with TCG: the test guest (tests/guest/init) mounts the
 * cloud-init seed vmd attaches and reads the systemd credentials from fw_cfg, and prints
 * what it found (VMD-GUEST-SEED, VMD-GUEST-CREDENTIAL); the test checks that against what
 * it wrote, that an edited userData rebuilds the seed and restarts the VM (updatePolicy
 * restart), and that a credential's value is nowhere but in the guest once it runs: not
 * in status.json, the daemon's log, `vmd plan`, the state or run dir (vmd's copy for QEMU
 * is gone once QEMU started), or QEMU's command line.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "qemu-fixture.h"

/* A value that shows wherever it leaks, as text. */
#define SECRET "vmd-test-secret-5d1f0c"
#define KEY "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIVmdTestKey test@vmd"

/* sha256sum's digest of data, through a file in dir. */
static char *sha256(const char *dir, const char *data)
{
	_cleanup_(test_run_done) TestRun r = {};
	_cleanup_free_ char *path = path_in(dir, "sha256-input");
	char *argv[] = { (char *)"/usr/bin/sha256sum", path, NULL };

	test_write_str(dir, "sha256-input", data);
	test_run(&r, argv);
	assert_int_equal(r.status, 0);
	assert_true(strlen(r.out) > 64);
	return strndup(r.out, 64);
}

static void put(Fixture *f, const char *user_data, const char *secret_path)
{
	_cleanup_free_ char *spec = NULL;

	assert_true(asprintf(&spec,
			     "  updatePolicy: restart\n"
			     "  cmdline: console=ttyS0 quiet\n"
			     "  cloudInit:\n"
			     "    userData: \"%s\"\n"
			     "    sshAuthorizedKeys: [\"" KEY "\"]\n"
			     "  credentials:\n"
			     "    - {name: web.password, fromFile: \"%s\"}\n",
			     user_data, secret_path) > 0);
	qemu_put(f, "vm", spec);
}

/* Whether any file under dir (but skip, if given) holds needle. */
static bool tree_has(const char *dir, const char *skip, const char *needle)
{
	DIR *d = opendir(dir);
	bool found = false;

	if (!d)
		return false;
	for (struct dirent *e; !found && (e = readdir(d));) {
		_cleanup_free_ char *p = NULL, *text = NULL;
		struct stat st;

		if (streq(e->d_name, ".") || streq(e->d_name, ".."))
			continue;
		p = path_in(dir, "%s", e->d_name);
		if ((skip && streq(p, skip)) || lstat(p, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode))
			found = tree_has(p, skip, needle);
		else if (S_ISREG(st.st_mode) && (text = test_read_file(p, NULL)))
			found = strstr(text, needle) != NULL;
	}
	closedir(d);
	return found;
}

static void expect_no_secret(Fixture *f, pid_t qemu)
{
	_cleanup_(test_run_done) TestRun r = {};
	_cleanup_free_ char *cmdline_path = NULL, *cmdline = NULL, *log = NULL, *status = NULL,
			    *copies = path_in(f->run, "vm/credentials");
	char *argv[] = { (char *)test_vmd(),
			 (char *)"plan",
			 (char *)"--sandboxes",
			 f->sb,
			 (char *)"--run-dir",
			 f->run,
			 (char *)"--state-dir",
			 f->state,
			 NULL };
	json_t *s = fixture_status(f, "vm");
	size_t len;

	status = json_dumps(s, 0);
	json_decref(s);
	assert_non_null(status);
	assert_null(strstr(status, SECRET));
	log = test_read_file(f->log, NULL);
	assert_non_null(log);
	assert_null(strstr(log, SECRET));
	test_run(&r, argv);
	assert_int_equal(r.status, 0);
	assert_null(strstr(r.out, SECRET));
	assert_null(strstr(r.err, SECRET));
	assert_false(tree_has(f->state, NULL, SECRET));
	/* The run dir: vmd's copy for QEMU went once QEMU had read it, at its start. */
	assert_false(tree_has(f->run, NULL, SECRET));
	assert_true(access(copies, F_OK) < 0 && errno == ENOENT);
	/* QEMU's argv: its NULs made spaces, so that strstr sees all of it. */
	assert_true(asprintf(&cmdline_path, "/proc/%d/cmdline", (int)qemu) > 0);
	cmdline = test_read_file(cmdline_path, &len);
	assert_non_null(cmdline);
	for (size_t i = 0; i < len; i++)
		if (!cmdline[i])
			cmdline[i] = ' ';
	assert_non_null(strstr(cmdline, "opt/io.systemd.credentials/web.password"));
	assert_null(strstr(cmdline, SECRET));
}

/* Running and Ready, under another QEMU than *arg. */
static bool runs_other(json_t *s, const void *arg)
{
	return ready(s, "Running") && pid_of(s) > 0 && pid_of(s) != *(const pid_t *)arg;
}

static void test_seed_and_credentials(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *secret = path_in(f->dir, "secret"), *want_keys = NULL,
			    *want_cred = NULL, *ud1 = NULL, *ud2 = NULL, *line = NULL,
			    *copies = path_in(f->run, "vm/credentials"),
			    *seed = path_in(f->run, "vm/seed.iso"), *want = NULL;
	pid_t qemu, qemu2;
	struct stat st;
	json_t *s;

	test_write_str(f->dir, "secret", SECRET);
	assert_int_equal(chmod(secret, 0600), 0);
	want_keys = sha256(f->dir, KEY "\n");
	want_cred = sha256(f->dir, SECRET);
	ud1 = sha256(f->dir, "#cloud-config\nhostname: one\n");
	ud2 = sha256(f->dir, "#cloud-config\nhostname: two\n");

	put(f, "#cloud-config\\nhostname: one\\n", secret);
	fixture_start_daemon(f);
	fixture_wait_console(f, "vm", "VMD-GUEST-READY", 0);
	qemu = fixture_running(f, "vm");

	/* What the guest read: the hostname vmd gave it, the key, the user-data, the secret. */
	line = fixture_last_line(f, "vm", "VMD-GUEST-SEED ");
	assert_true(asprintf(&want, "hostname=vm keys=%s user-data=%s", want_keys, ud1) > 0);
	assert_string_equal(line, want);
	free(line);
	line = fixture_last_line(f, "vm", "VMD-GUEST-CREDENTIAL ");
	free(want);
	assert_true(asprintf(&want, "web.password sha256=%s", want_cred) > 0);
	assert_string_equal(line, want);
	assert_int_equal(stat(seed, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	expect_no_secret(f, qemu);

	/* userData edited: a boot-time change, so a restart, and the guest reads the new seed. */
	put(f, "#cloud-config\\nhostname: two\\n", secret);
	free(want);
	assert_true(asprintf(&want, "hostname=vm keys=%s user-data=%s", want_keys, ud2) > 0);
	fixture_wait_line(f, "vm", "VMD-GUEST-SEED ", want);
	s = fixture_wait_status(f, "vm", runs_other, &qemu);
	qemu2 = pid_of(s);
	json_decref(s);
	assert_true(qemu2 > 0 && qemu2 != qemu);
	expect_no_secret(f, qemu2);

	/* The file removed: the VM ends, and vmd's copies and seed go with it. */
	{
		_cleanup_free_ char *file = path_in(f->sb, "vm.yaml");

		assert_int_equal(unlink(file), 0);
	}
	json_decref(fixture_wait_status(f, "vm", absent, NULL));
	assert_true(stat(copies, &st) < 0 && errno == ENOENT);
	assert_true(stat(seed, &st) < 0 && errno == ENOENT);
}

/* A credential whose file is missing fails the start with its name, and starts no QEMU. */
static void test_missing_credential(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *missing = path_in(f->dir, "no-such-secret");
	json_t *s;

	put(f, "", missing);
	fixture_start_daemon(f);
	s = fixture_wait_status(f, "vm", failing, "credential 'web.password': fromFile '");
	assert_int_equal(pid_of(s), 0);
	json_decref(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_seed_and_credentials, qemu_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_missing_credential, qemu_setup, fixture_teardown),
	};

	return cmocka_run_group_tests_name("qemu-provision", tests, NULL, NULL);
}
