/* SPDX-License-Identifier: MIT */
/*
 * docs/fleet.md's ways of running many hosts, run here against this one: the Ansible
 * playbook (fleet/ansible/vmd.yml, Debian's ansible-core, a local connection, the
 * package and service steps turned off by their variables) and the pull model
 * (fleet/pull/vmd-pull from a git repository in a temporary directory, and its units
 * as systemd-analyze verify takes them). Both push into a temporary sandbox directory,
 * validate a whole set before they change anything, and remove what the source dropped.
 */
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>

#include "helpers.h"

static const char *GOOD = "apiVersion: vmd/v1\nkind: Sandbox\nspec: {backend: noop, memory: 64Mi}\n";
static const char *BAD =
	"apiVersion: vmd/v1\nkind: Sandbox\nspec: {backend: noop, memory: 64Mi, vpcus: 2}\n";

static char *path_in(const char *dir, const char *name)
{
	char *p = NULL;

	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static bool has_file(const char *dir, const char *name)
{
	_cleanup_free_ char *p = path_in(dir, name);

	return access(p, F_OK) == 0;
}

/* The files a push left in sb: exactly names (a NULL-terminated list), each as GOOD. */
static void expect_files(const char *sb, const char *const *names)
{
	unsigned n = 0, want = 0;
	struct dirent **entries = NULL;
	int k = scandir(sb, &entries, NULL, alphasort);

	assert_true(k >= 0);
	for (int i = 0; i < k; i++) {
		n += entries[i]->d_name[0] != '.';
		free(entries[i]);
	}
	free(entries);
	for (; *names; names++, want++) {
		_cleanup_free_ char *p = path_in(sb, *names), *text = test_read_file(p, NULL);
		struct stat st;

		if (!text)
			fail_msg("%s was not pushed", p);
		assert_string_equal(text, GOOD);
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0644);
	}
	assert_int_equal(n, want);
}

/* "NAME=DIRREL", for an environment or an Ansible variable; the caller frees it. */
static char *setting(const char *name, const char *dir, const char *rel)
{
	char *p = NULL;

	assert_true(asprintf(&p, "%s=%s%s", name, dir, rel) > 0);
	return p;
}

/* ansible-playbook on localhost, pushing dir/hosts into dir/sb (or --check); output in *r. */
static void run_playbook(TestRun *r, const char *dir, bool check)
{
	_cleanup_free_ char *home_env = setting("ANSIBLE_HOME", dir, "/.ansible"),
			    *sb = setting("vmd_sandbox_dir", dir, "/sb"),
			    *files = setting("vmd_files", dir, "/hosts"),
			    *binary = setting("vmd_binary", test_vmd(), "");
	char playbook[4096];

	snprintf(playbook, sizeof(playbook), "%s", test_src("fleet/ansible/vmd.yml"));
	test_run(r, (char *[]){ "/usr/bin/env",
				home_env,
				"ANSIBLE_LOCALHOST_WARNING=false",
				"ANSIBLE_NOCOLOR=1",
				"ansible-playbook",
				"-i",
				"localhost,",
				"-c",
				"local",
				check ? "--check" : "--diff",
				playbook,
				"-e",
				"vmd_hosts=localhost",
				"-e",
				"vmd_install=false",
				"-e",
				"vmd_service=false",
				"-e",
				"vmd_become=false",
				"-e",
				sb,
				"-e",
				files,
				"-e",
				binary,
				NULL });
}

static void playbook_ok(const char *dir, const char *changed, bool check)
{
	_cleanup_(test_run_done) TestRun r = {};

	run_playbook(&r, dir, check);
	if (r.status != 0 || !strstr(r.out, changed))
		fail_msg("ansible-playbook: status %d, not '%s':\n%s%s", r.status, changed, r.out,
			 r.err);
}

static void test_ansible(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r = {};
	char *dir = test_tmpdir();
	_cleanup_free_ char *sb = path_in(dir, "sb"), *dns = path_in(dir, "hosts/all/dns-1.yaml");

	test_write_str(dir, "hosts/all/dns-1.yaml", GOOD);
	test_write_str(dir, "hosts/localhost/web-1.yaml", GOOD);
	test_write_str(dir, "hosts/other-host/db-1.yaml", GOOD); /* another host's */

	/* --check says what would change, and changes nothing. */
	playbook_ok(dir, "changed=2 ", true);
	assert_false(has_file(dir, "sb"));
	/* Pushed: the files for every host and this host's own, nothing of another's. */
	playbook_ok(dir, "changed=2 ", false);
	expect_files(sb, (const char *const[]){ "dns-1.yaml", "web-1.yaml", NULL });
	/* Again: nothing changes. */
	playbook_ok(dir, "changed=0 ", false);

	/* A set with an invalid file changes nothing: the removal of dns-1 waits too. */
	assert_int_equal(unlink(dns), 0);
	test_write_str(dir, "hosts/localhost/api-1.yaml", BAD);
	run_playbook(&r, dir, false);
	assert_int_not_equal(r.status, 0);
	if (!strstr(r.out, "spec: unknown field 'vpcus'; did you mean 'vcpus'?"))
		fail_msg("the playbook does not say why:\n%s", r.out);
	expect_files(sb, (const char *const[]){ "dns-1.yaml", "web-1.yaml", NULL });

	/* Fixed: it is pushed, and what the source dropped is removed. */
	test_write_str(dir, "hosts/localhost/api-1.yaml", GOOD);
	playbook_ok(dir, "changed=2 ", false);
	expect_files(sb, (const char *const[]){ "api-1.yaml", "web-1.yaml", NULL });
	assert_false(has_file(sb, "dns-1.yaml"));
	test_tmpdir_remove(dir);
}

/* git -C dir ARGS..., which must succeed. */
static void git(const char *dir, const char *a1, const char *a2, const char *a3, const char *a4)
{
	_cleanup_(test_run_done) TestRun r = {};

	test_run(&r, (char *[]){ "/usr/bin/git", "-C", (char *)dir, "-c", "user.name=vmd tests", "-c",
				 "user.email=tests@vmd.invalid", "-c", "init.defaultBranch=main",
				 (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL });
	if (r.status != 0)
		fail_msg("git %s %s: %s", a1, a2 ?: "", r.err);
}

static void commit(const char *work, const char *message)
{
	git(work, "add", "-A", NULL, NULL);
	git(work, "commit", "-qm", message, NULL);
	git(work, "push", "-q", "origin", "main");
}

/* vmd-pull for host "h1" from dir/repo.git into dir/sb; its output in *r. */
static void run_pull(TestRun *r, const char *dir)
{
	_cleanup_free_ char *repo = setting("VMD_PULL_REPO", dir, "/repo.git"),
			    *checkout = setting("VMD_PULL_CHECKOUT", dir, "/checkout"),
			    *sb = setting("VMD_PULL_SANDBOXES", dir, "/sb"),
			    *vmd = setting("VMD", test_vmd(), "");
	char script[4096];

	snprintf(script, sizeof(script), "%s", test_src("fleet/pull/vmd-pull"));
	test_run(r, (char *[]){ "/usr/bin/env", repo, checkout, sb, "VMD_PULL_HOST=h1", vmd, script,
				NULL });
}

static void pull_ok(const char *dir, const char *says)
{
	_cleanup_(test_run_done) TestRun r = {};

	run_pull(&r, dir);
	if (r.status != 0 || !strstr(r.out, says))
		fail_msg("vmd-pull: status %d, not '%s':\n%s%s", r.status, says, r.out, r.err);
}

static void test_pull(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r = {};
	char *dir = test_tmpdir();
	_cleanup_free_ char *sb = path_in(dir, "sb"), *work = path_in(dir, "work"),
			    *bare = path_in(dir, "repo.git"),
			    *dns = path_in(work, "hosts/all/dns-1.yaml");

	git(dir, "init", "-q", "--bare", bare);
	git(dir, "clone", "-q", bare, work);
	test_write_str(work, "hosts/all/dns-1.yaml", GOOD);
	test_write_str(work, "hosts/h1/web-1.yaml", GOOD);
	test_write_str(work, "hosts/h2/db-1.yaml", GOOD);
	commit(work, "one");

	pull_ok(dir, "2 file(s) changed");
	expect_files(sb, (const char *const[]){ "dns-1.yaml", "web-1.yaml", NULL });
	pull_ok(dir, "0 file(s) changed");

	/* A commit with an invalid file for this host changes nothing here, and fails. */
	assert_int_equal(unlink(dns), 0);
	test_write_str(work, "hosts/h1/api-1.yaml", BAD);
	commit(work, "two");
	run_pull(&r, dir);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "spec: unknown field 'vpcus'"));
	assert_non_null(strstr(r.err, "not all valid; nothing changed"));
	expect_files(sb, (const char *const[]){ "dns-1.yaml", "web-1.yaml", NULL });

	test_write_str(work, "hosts/h1/api-1.yaml", GOOD);
	commit(work, "three");
	pull_ok(dir, "2 file(s) changed");
	expect_files(sb, (const char *const[]){ "api-1.yaml", "web-1.yaml", NULL });
	test_tmpdir_remove(dir);
}

/* The pull model's units, as systemd-analyze verify takes them (ExecStart at the script). */
static void test_pull_units(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r = {};
	_cleanup_free_ char *service = test_read_file(test_src("fleet/pull/vmd-pull.service"), NULL),
			    *timer = test_read_file(test_src("fleet/pull/vmd-pull.timer"), NULL),
			    *copy = NULL, *service_path = NULL, *timer_path = NULL;
	char *dir = test_tmpdir(), *at;

	assert_non_null(service);
	assert_non_null(timer);
	at = strstr(service, "ExecStart=/usr/local/bin/vmd-pull\n");
	assert_non_null(at);
	assert_true(asprintf(&copy, "%.*sExecStart=%s\n%s", (int)(at - service), service,
			     test_src("fleet/pull/vmd-pull"),
			     at + strlen("ExecStart=/usr/local/bin/vmd-pull\n")) > 0);
	test_write_str(dir, "vmd-pull.service", copy);
	test_write_str(dir, "vmd-pull.timer", timer);
	service_path = path_in(dir, "vmd-pull.service");
	timer_path = path_in(dir, "vmd-pull.timer");
	test_run(&r, (char *[]){ "/usr/bin/systemd-analyze", "verify", "--man=no", service_path,
				 timer_path, NULL });
	if (r.status != 0 || r.err[0])
		fail_msg("systemd-analyze verify: %s", r.err);
	test_tmpdir_remove(dir);
}

/*
 * fleet/kubernetes/vmd-daemonset.yaml: a ConfigMap and a DaemonSet that mounts it as the
 * sandbox directory; laid out as kubelet lays a ConfigMap out (NAME.yaml -> ..data/NAME.yaml,
 * ..data -> ..TIMESTAMP), every file of it validates as the daemon would read it.
 */
static const char *const K8S_LAYOUT =
	"import os, sys, yaml\n"
	"docs = list(yaml.safe_load_all(open(sys.argv[1])))\n"
	"kinds = [d['kind'] for d in docs]\n"
	"assert kinds == ['ConfigMap', 'DaemonSet'], kinds\n"
	"ds = docs[1]['spec']['template']['spec']\n"
	"vol = [v for v in ds['volumes'] if v['name'] == 'sandboxes'][0]\n"
	"assert vol['configMap']['name'] == docs[0]['metadata']['name']\n"
	"mount = [m for m in ds['containers'][0]['volumeMounts'] if m['name'] == 'sandboxes'][0]\n"
	"assert '--sandboxes=' + mount['mountPath'] in ds['containers'][0]['args']\n"
	"d = sys.argv[2]\n"
	"os.makedirs(os.path.join(d, '..2026_01_01'))\n"
	"for name, text in docs[0]['data'].items():\n"
	"    open(os.path.join(d, '..2026_01_01', name), 'w').write(text)\n"
	"    os.symlink('..data/' + name, os.path.join(d, name))\n"
	"os.symlink('..2026_01_01', os.path.join(d, '..data'))\n"
	"print(len(docs[0]['data']))\n";

static void test_kubernetes(void **state _unused_)
{
	_cleanup_(test_run_done) TestRun r = {}, v = {};
	char *dir = test_tmpdir(), manifest[4096];
	_cleanup_free_ char *sb = path_in(dir, "sandboxes");
	const char *python = getenv("PYTHON") ?: "/usr/bin/python3";

	snprintf(manifest, sizeof(manifest), "%s", test_src("fleet/kubernetes/vmd-daemonset.yaml"));
	test_run(&r, (char *[]){ (char *)python, "-c", (char *)K8S_LAYOUT, manifest, sb, NULL });
	if (r.status != 0)
		fail_msg("the manifest: %s", r.err);
	assert_string_equal(r.out, "2\n");
	test_run(&v, (char *[]){ (char *)test_vmd(), "validate", "--default-backend", "qemu",
				 "--sandboxes", sb, sb, NULL });
	if (v.status != 0)
		fail_msg("vmd validate: %s", v.err);
	assert_non_null(strstr(v.out, "web-1.yaml"));
	assert_non_null(strstr(v.out, "dns-1.yaml"));
	test_tmpdir_remove(dir);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pull),
		cmocka_unit_test(test_pull_units),
		cmocka_unit_test(test_ansible),
		cmocka_unit_test(test_kubernetes),
	};

	return cmocka_run_group_tests_name("fleet", tests, NULL, NULL);
}
