/* SPDX-License-Identifier: MIT */
/*
 * The daemon's event stream (reconciler/events.c, docs/events.md) on the real `vmd daemon`
 * with noop sandboxes: the snapshot a client gets on connecting, the events of an edit in
 * their order (the file loaded, the action begun and done, the phase, the conditions, Ready
 * once the console probe passes), a client that reads nothing dropped while another keeps
 * getting every event, vmd events --json and its words, and vmd status --watch redrawing
 * after an edit; both end on SIGINT with exit 0.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon-fixture.h"
#include "helpers.h"
#include "util.h"

#define PROBED                                                                                     \
	"apiVersion: vmd/v1\nkind: Sandbox\nspec:\n  backend: noop\n  memory: 64Mi\n"              \
	"  readiness: {console: {match: \"^VMD-GUEST-READY$\"}, period: 100ms}\n"

/* A child this test started (vmd events, vmd status --watch): killed in teardown if left. */
static pid_t child;

static int teardown(void **state)
{
	test_kill_wait(&child, SIGKILL);
	return fixture_teardown(state);
}

/* A client of the daemon's events.sock, reading lines. */
typedef struct Reader {
	int fd;
	char buf[1 << 16];
	size_t len;
} Reader;

static void reader_open(Fixture *f, Reader *r)
{
	_cleanup_free_ char *path = path_in(f->run, "events.sock");

	r->len = 0;
	r->fd = -1;
	for (uint64_t end = ms_now() + FIXTURE_WAIT_MS; r->fd < 0 && ms_now() < end;) {
		r->fd = unix_connect(path);
		if (r->fd < 0)
			fixture_pass_time(f, 50);
	}
	assert_true(r->fd >= 0);
}

/* The next event, parsed; fails the test if none comes in time. */
static json_t *reader_next(Reader *r)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	for (;;) {
		char *nl = memchr(r->buf, '\n', r->len);
		struct pollfd p = { .fd = r->fd, .events = POLLIN };
		ssize_t n;

		if (nl) {
			json_t *j = json_loadb(r->buf, (size_t)(nl - r->buf), 0, NULL);

			assert_non_null(j);
			r->len -= (size_t)(nl - r->buf) + 1;
			memmove(r->buf, nl + 1, r->len);
			return j;
		}
		assert_true(ms_now() < end);
		assert_true(r->len < sizeof(r->buf));
		if (poll(&p, 1, 1000) <= 0)
			continue;
		n = read(r->fd, r->buf + r->len, sizeof(r->buf) - r->len);
		assert_true(n > 0 || (n < 0 && errno == EAGAIN));
		if (n > 0)
			r->len += (size_t)n;
	}
}

static const char *field(json_t *e, const char *key)
{
	return json_string_value(json_object_get(e, key)) ?: "";
}

/*
 * Read until an event of type for sandbox whose key is value (key NULL: any), appending
 * "type:detail" of every event of that sandbox on the way to *trail.
 */
static json_t *reader_until(Reader *r, const char *sandbox, const char *type, const char *key,
			    const char *value, char **trail)
{
	for (;;) {
		json_t *e = reader_next(r);
		const char *t = field(e, "type");

		if (trail && streq(field(e, "sandbox"), sandbox)) {
			const char *what = streq(t, "condition") ? field(e, "condition")
					   : streq(t, "action")	 ? field(e, "action")
								 : "";
			const char *detail = streq(t, "phase")	     ? field(e, "phase")
					     : streq(t, "condition") ? field(e, "status")
								     : field(e, "result");
			char *s = NULL;

			assert_true(asprintf(&s, "%s%s:%s%s%s", *trail, t, what, *what ? "=" : "",
					     detail) > 0);
			free(*trail);
			*trail = s;
			s = NULL;
			assert_true(asprintf(&s, "%s ", *trail) > 0);
			free(*trail);
			*trail = s;
		}
		if (streq(t, type) && streq(field(e, "sandbox"), sandbox) &&
		    (!key || streq(field(e, key), value)))
			return e;
		json_decref(e);
	}
}

/* Where needle is in haystack after from; fails the test if it is not. */
static const char *after(const char *haystack, const char *from, const char *needle)
{
	const char *p = strstr(from, needle);

	if (!p)
		fail_msg("'%s' not found in '%s' after '%.40s'", needle, haystack, from);
	return p + strlen(needle);
}

/*
 * The snapshot on connecting, then an edit's events in order: the file loaded, the start
 * begun and done, the phase, Running, Ready False while the probe waits, then True.
 */
static void test_edit(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *trail = strdup(""), *dir = NULL, *sock = NULL;
	struct stat st;
	Reader r;
	json_t *e;
	const char *p;
	uint64_t seq;

	fixture_put(f, "db", FIXTURE_NOOP_SPEC);
	fixture_put(f, "web", FIXTURE_NOOP_SPEC "  state: stopped\n");
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "db", phase_is, "Running"));
	json_decref(fixture_wait_status(f, "web", phase_is, "Stopped"));

	reader_open(f, &r);
	/* Who reads status.json (0640) reads the events: 0660, a socket. */
	sock = path_in(f->run, "events.sock");
	assert_int_equal(stat(sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0660);
	/*
	 * It takes no commands: what a client says is thrown away, and the end of what it says
	 * (socat with its input at an end) does not end its events.
	 */
	assert_int_equal(write(r.fd, "{\"stop\": \"db\"}\n", 16), 16);
	assert_int_equal(shutdown(r.fd, SHUT_WR), 0);
	/* What each is now, by name, then "synced", all as of one sequence number. */
	e = reader_next(&r);
	assert_string_equal(field(e, "type"), "snapshot");
	assert_string_equal(field(e, "sandbox"), "db");
	assert_string_equal(field(e, "phase"), "Running");
	assert_string_equal(
		field(json_object_get(json_object_get(e, "conditions"), "Ready"), "status"), "True");
	assert_int_equal(json_integer_value(json_object_get(e, "generation")), 1);
	seq = (uint64_t)json_integer_value(json_object_get(e, "seq"));
	json_decref(e);
	e = reader_next(&r);
	assert_string_equal(field(e, "sandbox"), "web");
	assert_string_equal(field(e, "phase"), "Stopped");
	json_decref(e);
	e = reader_next(&r);
	assert_string_equal(field(e, "type"), "synced");
	assert_int_equal(json_integer_value(json_object_get(e, "seq")), seq);
	json_decref(e);

	fixture_put(f, "web", PROBED);
	e = reader_until(&r, "web", "condition", "condition", "Ready", &trail);
	assert_string_equal(field(e, "status"), "False");
	assert_true(streq(field(e, "reason"), "Probing") || streq(field(e, "reason"), "ProbeFailed"));
	assert_true((uint64_t)json_integer_value(json_object_get(e, "seq")) > seq);
	json_decref(e);
	dir = path_in(f->run, "web");
	test_write_str(dir, "console.log", "booting\nVMD-GUEST-READY\n");
	for (bool up = false; !up;) {
		e = reader_until(&r, "web", "condition", "condition", "Ready", &trail);
		up = streq(field(e, "status"), "True");
		json_decref(e);
	}

	/* In this order (Running and Ready's first change in one), whatever comes between. */
	p = after(trail, trail, "file:loaded ");
	p = after(trail, p, "action:start=begun ");
	p = after(trail, p, "action:start=succeeded ");
	p = after(trail, p, "phase:Running ");
	(void)after(trail, p, "condition:Running=True ");
	p = after(trail, p, "condition:Ready=False ");
	(void)after(trail, p, "condition:Ready=True ");
	close(r.fd);
	json_decref(fixture_wait_status(f, "db", phase_is, "Running"));
}

/*
 * A client that reads nothing is dropped, said in the journal; the daemon goes on, and
 * another client gets every event meanwhile.
 */
static void test_slow_client(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *log = NULL;
	Reader slow, fast;
	int dropped_round = -1;

	for (int i = 0; i < 100; i++) {
		char name[16];

		snprintf(name, sizeof(name), "s%02d", i);
		fixture_put(f, name, FIXTURE_NOOP_SPEC);
	}
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, "s99", phase_is, "Running"));
	reader_open(f, &slow);
	reader_open(f, &fast);
	json_decref(reader_until(&fast, "", "synced", NULL, NULL, NULL));

	/* Each round: 100 files loaded and resized, some 300 events, none read by slow. */
	for (int round = 0; round < 40 && dropped_round < 0; round++) {
		char text[256];

		snprintf(text, sizeof(text), "%s  vcpus: %d\n", FIXTURE_NOOP_SPEC, 2 + round % 2);
		for (int i = 0; i < 100; i++) {
			char name[16];

			snprintf(name, sizeof(name), "s%02d", i);
			fixture_put(f, name, text);
		}
		/* fast has all of the round, to its last sandbox's resize. */
		json_decref(reader_until(&fast, "s99", "action", "result", "succeeded", NULL));
		free(log);
		log = test_read_file(f->log, NULL);
		if (strstr(log, "dropped a client of "))
			dropped_round = round;
	}
	assert_true(dropped_round >= 0);
	assert_non_null(strstr(log, "events.sock: it does not read its events fast enough"));
	assert_int_equal(count_in(log, "dropped a client of "), 1);

	/* slow's connection is closed once what it was sent is read. */
	for (;;) {
		char buf[65536];
		ssize_t n;
		struct pollfd p = { .fd = slow.fd, .events = POLLIN };

		assert_true(poll(&p, 1, FIXTURE_WAIT_MS) == 1);
		n = read(slow.fd, buf, sizeof(buf));
		if (n == 0)
			break;
		assert_true(n > 0 || errno == EAGAIN);
	}
	close(slow.fd);

	/* And the daemon still does its work, and tells fast. */
	fixture_put(f, "s00", FIXTURE_NOOP_SPEC "  state: paused\n");
	json_decref(reader_until(&fast, "s00", "phase", "phase", "Paused", NULL));
	json_decref(fixture_wait_status(f, "s00", phase_is, "Paused"));
	close(fast.fd);
}

#define MANY 2000

/*
 * A snapshot larger than a client's bound (some 1 MB) comes whole, as the client reads it,
 * and is no drop. Events of a sandbox whose snapshot is sent come after it; those of one
 * whose snapshot is still to come do not come before it, which tells their outcome. (The
 * last one's snapshot is still to come when nobody reads: the daemon renders 64 KiB ahead,
 * and a Unix socket holds net.core.wmem_default, 208 KiB, far less than the snapshot.)
 */
static void test_big_snapshot(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *log = NULL;
	char last[16], text[256];
	unsigned snapshots = 0;
	bool first_loaded = false, last_seen = false;
	Reader r;
	json_t *e;

	for (int i = 0; i < MANY; i++) {
		snprintf(last, sizeof(last), "s%04d", i);
		fixture_put(f, last, FIXTURE_NOOP_SPEC);
	}
	fixture_start_daemon(f);
	json_decref(fixture_wait_status(f, last, phase_is, "Running"));
	reader_open(f, &r);
	/* Its first snapshot read: it is taken. While it reads no more, the first and the last change. */
	e = reader_next(&r);
	assert_string_equal(field(e, "sandbox"), "s0000");
	assert_int_equal(json_integer_value(json_object_get(e, "generation")), 1);
	json_decref(e);
	snapshots = 1;
	snprintf(text, sizeof(text), "%s  vcpus: 2\n", FIXTURE_NOOP_SPEC);
	fixture_put(f, "s0000", text);
	fixture_put(f, last, text);
	json_decref(fixture_wait_status(f, "s0000", generation_settled, (void *)(uintptr_t)2));
	json_decref(fixture_wait_status(f, last, generation_settled, (void *)(uintptr_t)2));

	for (;;) {
		const char *type, *name;
		bool done;

		e = reader_next(&r);
		type = field(e, "type");
		name = field(e, "sandbox");
		done = streq(type, "synced");

		if (streq(type, "snapshot")) {
			snapshots++;
			if (streq(name, "s0000"))
				assert_int_equal(
					json_integer_value(json_object_get(e, "generation")), 1);
			if (streq(name, last)) {
				assert_int_equal(
					json_integer_value(json_object_get(e, "generation")), 2);
				last_seen = true;
			}
		} else if (streq(name, last))
			assert_true(last_seen); /* nothing of it before its snapshot */
		else if (streq(name, "s0000") && streq(type, "file"))
			first_loaded = true;
		json_decref(e);
		if (done)
			break;
	}
	assert_int_equal(snapshots, MANY);
	assert_true(first_loaded);
	close(r.fd);
	log = test_read_file(f->log, NULL);
	assert_null(strstr(log, "dropped a client"));
}

/* The lowest fd number pid has not open: the one its next open would get. */
static unsigned lowest_free_fd(pid_t pid)
{
	char path[64];
	bool used[4096] = {};
	unsigned k = 0;
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && (unsigned)atoi(e->d_name) < ELEMENTSOF(used))
			used[atoi(e->d_name)] = true;
	closedir(d);
	while (used[k])
		k++;
	return k;
}

/*
 * Out of fds, the daemon cannot take a client: it says so once and stops watching the
 * socket for a second at a time (else the waiting connection would wake it at once, again
 * and again), and takes the one waiting once it can.
 */
static void test_out_of_fds(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *started = fixture_start_noop(f, "web"), *log = NULL;
	struct rlimit was, now;
	Reader first, second;

	reader_open(f, &first);
	json_decref(reader_until(&first, "", "synced", NULL, NULL, NULL));
	assert_int_equal(prlimit(f->pid, RLIMIT_NOFILE, NULL, &was), 0);
	now = was;
	now.rlim_cur = lowest_free_fd(f->pid); /* no new fd fits below it */
	assert_int_equal(prlimit(f->pid, RLIMIT_NOFILE, &now, NULL), 0);
	reader_open(f, &second); /* in the backlog: connected, not taken */
	for (uint64_t end = ms_now() + FIXTURE_WAIT_MS;;) {
		free(log);
		log = test_read_file(f->log, NULL);
		if (strstr(log, "cannot take a client of "))
			break;
		assert_true(ms_now() < end);
		fixture_pass_time(f, 50);
	}
	assert_non_null(strstr(log, "events.sock; trying again every second"));
	assert_non_null(strstr(strstr(log, "cannot take a client of "), "Too many open files"));
	fixture_pass_time(f, 1500); /* tried again meanwhile: said once */
	free(log);
	log = test_read_file(f->log, NULL);
	assert_int_equal(count_in(log, "cannot take a client of "), 1);

	/* Room again: the one waiting is taken, gets its snapshot; the daemon goes on. */
	assert_int_equal(prlimit(f->pid, RLIMIT_NOFILE, &was, NULL), 0);
	json_decref(reader_until(&second, "", "synced", NULL, NULL, NULL));
	fixture_put(f, "web", FIXTURE_NOOP_SPEC "  state: paused\n");
	json_decref(reader_until(&first, "web", "phase", "phase", "Paused", NULL));
	json_decref(reader_until(&second, "web", "phase", "phase", "Paused", NULL));
	close(first.fd);
	close(second.fd);
}

/* Start argv with its stdout on a pipe (in child); the pipe's read end. */
static int spawn(char *const argv[])
{
	int p[2];

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(p[1], 1);
		execv(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	return p[0];
}

/* Read from fd into *out (from *len) until it holds needle after from. */
static void read_until(int fd, char **out, size_t *len, size_t from, const char *needle)
{
	uint64_t end = ms_now() + FIXTURE_WAIT_MS;

	while (!(*len > from && strstr(*out + from, needle))) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char buf[4096];
		ssize_t n;

		assert_true(ms_now() < end);
		if (poll(&p, 1, 1000) <= 0)
			continue;
		n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			fail_msg("the command ended before '%s': %s", needle, *out);
		*out = realloc(*out, *len + (size_t)n + 1);
		assert_non_null(*out);
		memcpy(*out + *len, buf, (size_t)n);
		*len += (size_t)n;
		(*out)[*len] = '\0';
	}
}

/* SIGINT to child, by its pid: it ends with exit 0. */
static void interrupt(void)
{
	int status;

	assert_int_equal(kill(child, SIGINT), 0);
	assert_int_equal(waitpid(child, &status, 0), child);
	child = 0;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* vmd events --json: each line a JSON object; its words without; SIGINT ends them. */
static void test_cli(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *started = fixture_start_noop(f, "web"), *out = NULL, *err = NULL;
	char *argv[] = { (char *)test_vmd(),  (char *)"events", (char *)"--json",
			 (char *)"--run-dir", f->run,		NULL };
	size_t len = 0, lines = 0;
	int fd = spawn(argv);
	TestRun r;

	read_until(fd, &out, &len, 0, "\"type\":\"synced\"");
	fixture_put(f, "web", FIXTURE_NOOP_SPEC "  state: paused\n");
	read_until(fd, &out, &len, 0, "\"phase\":\"Paused\"");
	interrupt();
	close(fd);
	for (char *line = out, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
		json_t *j = json_loadb(line, (size_t)(nl - line), 0, NULL);

		assert_true(json_is_object(j));
		assert_true(json_integer_value(json_object_get(j, "seq")) >= 0);
		assert_non_null(json_string_value(json_object_get(j, "time")));
		assert_non_null(json_string_value(json_object_get(j, "type")));
		json_decref(j);
		lines++;
	}
	assert_true(lines >= 5); /* snapshot, synced, loaded, pause begun and done, phase */

	/* In words, one line an event, with its time. */
	argv[2] = (char *)"--run-dir";
	argv[3] = f->run;
	argv[4] = NULL;
	out = mfree(out);
	len = 0;
	fd = spawn(argv);
	read_until(fd, &out, &len, 0, " web is Paused, Ready True (AsDesired), generation 2\n");
	fixture_put(f, "web", FIXTURE_NOOP_SPEC);
	read_until(fd, &out, &len, 0, " web resume begun: ");
	read_until(fd, &out, &len, 0, " web phase Paused -> Running\n");
	read_until(fd, &out, &len, 0, " web Running False -> True (VmRunning)\n");
	interrupt();
	close(fd);
	assert_int_equal(out[4], '-'); /* 2026-12-01T...Z: the time first */

	/* No daemon to talk to: said, exit 1. */
	fixture_stop_daemon(f, SIGTERM);
	test_run(&r, (char *[]){ (char *)test_vmd(), (char *)"events", (char *)"--run-dir", f->run,
				 NULL });
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "vmd events: cannot connect to "));
	test_run_done(&r);
}

/* vmd status --watch: the table, then again after an edit; SIGINT ends it. */
static void test_watch(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *started = fixture_start_noop(f, "web"), *out = NULL;
	char *argv[] = { (char *)test_vmd(),  (char *)"status", (char *)"--watch",
			 (char *)"--run-dir", f->run,		NULL };
	size_t len = 0, first;
	int fd = spawn(argv);
	TestRun r;

	read_until(fd, &out, &len, 0, "--- ");
	read_until(fd, &out, &len, 0, "\nweb ");
	first = len;
	assert_non_null(strstr(out, "Running"));
	fixture_put(f, "web", FIXTURE_NOOP_SPEC "  state: paused\n");
	read_until(fd, &out, &len, first, "Paused");
	assert_non_null(strstr(out + first, "--- "));
	interrupt();
	close(fd);

	/* No daemon serves the socket: it says so rather than watch files nobody updates. */
	fixture_stop_daemon(f, SIGTERM);
	test_run(&r, argv);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "vmd status --watch: cannot connect to "));
	test_run_done(&r);
}

/* How many read system calls pid made (/proc/PID/io's syscr). */
static unsigned long long reads_of(pid_t pid)
{
	_cleanup_free_ char *path = NULL, *io = NULL;
	const char *p;

	assert_true(asprintf(&path, "/proc/%d/io", (int)pid) > 0);
	io = test_read_file(path, NULL);
	assert_non_null(io);
	p = strstr(io, "syscr: ");
	assert_non_null(p);
	return strtoull(p + 7, NULL, 10);
}

/* Wait until child has ended; its exit status. */
static int child_status(void)
{
	int status;

	assert_int_equal(waitpid(child, &status, 0), child);
	child = 0;
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/*
 * vmd wait on inotify: started before there is a run dir, it sees the daemon's first
 * status; while nothing changes it reads nothing (no polling), and it sees a removal.
 */
static void test_wait_inotify(void **state)
{
	Fixture *f = *state;
	_cleanup_free_ char *path = path_in(f->sb, "db.yaml");
	char *ready[] = { (char *)test_vmd(),
			  (char *)"wait",
			  (char *)"db",
			  (char *)"--for",
			  (char *)"ready",
			  (char *)"--timeout",
			  (char *)"120s",
			  (char *)"--run-dir",
			  f->run,
			  NULL };
	char *deleted[] = { (char *)test_vmd(),
			    (char *)"wait",
			    (char *)"db",
			    (char *)"--for",
			    (char *)"deleted",
			    (char *)"--timeout",
			    (char *)"120s",
			    (char *)"--run-dir",
			    f->run,
			    NULL };
	unsigned long long before;
	int fd;

	(void)rmdir(f->run);
	assert_int_equal(access(f->run, F_OK), -1);
	fd = spawn(ready);
	close(fd);
	fixture_put(f, "db", FIXTURE_NOOP_SPEC);
	fixture_start_daemon(f);
	assert_int_equal(child_status(), 0);

	fd = spawn(deleted);
	close(fd);
	/* Once it looked and waits (its reads stand still a moment), none for a second. */
	for (uint64_t end = ms_now() + FIXTURE_WAIT_MS;;) {
		before = reads_of(child);
		fixture_pass_time(f, 100);
		if (reads_of(child) == before)
			break;
		assert_true(ms_now() < end);
	}
	fixture_pass_time(f, 1000);
	assert_int_equal(reads_of(child), before);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(child_status(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_edit, fixture_setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_client, fixture_setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_snapshot, fixture_setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_fds, fixture_setup, teardown),
		cmocka_unit_test_setup_teardown(test_cli, fixture_setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch, fixture_setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_inotify, fixture_setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
