/* SPDX-License-Identifier: MIT */
/*
 * Strays: live VMMs for a name that vmd cannot take in charge. A VMM of this backend that
 * runs for a sandbox of this run dir is found by its command line (VmmVmType.argv_name),
 * from one scan of /proc per backend at its first need (again after a SIGHUP), or by
 * someone listening on its API socket; a record whose pid runs for its sandbox with
 * another identity names an impostor. vmm-vm.c asks before a start or a cleanup, and when
 * it finds a VM absent or exited.
 */
#include <stdio.h>

#include "util.h"
#include "vmm-vm.h"

typedef struct VmmStray VmmStray;
struct VmmStray {
	char *name;
	VmmIdentity id;
	VmmStray *next; /* another one for the same name */
};

void vmm_strays_forget(VmmBackend *vb)
{
	void *p;

	for (size_t i = 0; hashmap_next(vb->strays, &i, &p);)
		for (VmmStray *s = p, *next; s; s = next) {
			next = s->next;
			free(s->name);
			free(s);
		}
	vb->strays = hashmap_free(vb->strays);
	vb->strays_scanned = false;
}

/* The rest of path after "<dir>/" (dir without its trailing slashes), or NULL. */
static const char *after_dir(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (strncmp(path, dir, n) != 0 || path[n] != '/')
		return NULL;
	return path + n + 1;
}

int vmm_argv_names_dir(const Backend *b, char *const *argv, const char *option, const char *prefix,
		       const char *file, char **ret_name)
{
	for (size_t i = 0; argv[i] && argv[i + 1]; i++) {
		const char *v = argv[i + 1], *rest, *slash;

		if (!streq(argv[i], option) || strncmp(v, prefix, strlen(prefix)) != 0)
			continue;
		rest = after_dir(v + strlen(prefix), b->run_dir);
		slash = rest ? strchr(rest, '/') : NULL;
		if (!slash || slash == rest || !streq(slash + 1, file))
			continue;
		*ret_name = strndup(rest, (size_t)(slash - rest));
		return *ret_name ? 1 : -ENOMEM;
	}
	return 0;
}

int vmm_stderr_names_dir(const Backend *b, pid_t pid, const char *file, char **ret_name)
{
	_cleanup_free_ char *log = NULL;
	size_t n;

	if (vmm_process_link(pid, "fd/2", &log) < 0)
		return 0;
	/* Its log removed under it is still its log. */
	n = strlen(log);
	if (n > 10 && streq(log + n - 10, " (deleted)"))
		log[n - 10] = '\0';
	return vmm_argv_names_dir(b, (char *[]){ (char *)"-stderr", log, NULL }, "-stderr", "",
				  file, ret_name);
}

static int scan_one(pid_t pid, char **argv, void *userdata)
{
	Backend *b = userdata;
	VmmBackend *vb = VMM_BACKEND(b);
	_cleanup_free_ char *name = NULL;
	VmmStray *s, *first;
	int r;

	r = vb->type->argv_name(b, pid, argv, &name);
	if (r <= 0)
		return r == -ENOMEM ? r : 0;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (vmm_identity(pid, &s->id) < 0) {
		free(s);
		return 0; /* gone meanwhile */
	}
	s->name = TAKE_PTR(name);
	first = hashmap_get(vb->strays, s->name);
	if (first) {
		s->next = first->next;
		first->next = s;
		return 0;
	}
	r = hashmap_put(vb->strays, s->name, s);
	if (r < 0) {
		free(s->name);
		free(s);
	}
	return r;
}

/* Every process of this VMM that runs for a name of this run dir, once. */
static int strays_scan(Backend *b)
{
	VmmBackend *vb = VMM_BACKEND(b);
	int r;

	if (vb->strays_scanned)
		return 0;
	vb->strays = hashmap_new();
	if (!vb->strays)
		return -ENOMEM;
	r = vmm_foreach_process(scan_one, b);
	if (r < 0) {
		vmm_strays_forget(vb);
		return r;
	}
	vb->strays_scanned = true;
	return 0;
}

/*
 * A live VMM of this type for name that this vmd does not drive: found by its argv, or by
 * someone listening on its socket (*ret then has pid 0). 1 and *ret, 0 if none.
 */
static int find_stray(Backend *b, const char *name, VmmIdentity *ret)
{
	const VmmVm *driven = vmm_vm_get(b, name);
	_cleanup_free_ char *sock = vmm_vm_path(b, name, VMM_BACKEND(b)->type->socket);
	int r;

	if (!sock)
		return -ENOMEM;
	r = strays_scan(b);
	if (r < 0)
		return r;
	for (VmmStray *s = hashmap_get(VMM_BACKEND(b)->strays, name); s; s = s->next) {
		if (driven && driven->state != VM_EXITED && driven->id.pid == s->id.pid)
			continue; /* the one it drives */
		if (vmm_identity_matches(&s->id)) {
			*ret = s->id;
			return 1;
		}
	}
	if (vmm_socket_is_listening(sock)) {
		*ret = (VmmIdentity){};
		return 1;
	}
	return 0;
}

/*
 * The process a record names, when the record's identity does not hold, but it runs on
 * this boot for the record's very sandbox: 1 and its identity now.
 */
static int record_impostor(Backend *b, const VmmVm *rec, VmmIdentity *ret)
{
	_cleanup_free_ char **argv = NULL;
	_cleanup_free_ char *name = NULL;
	VmmIdentity now;

	if (!rec || rec->state == VM_EXITED || rec->id.pid <= 0 ||
	    !streq(rec->boot_id, VMM_BACKEND(b)->boot_id) || vmm_identity(rec->id.pid, &now) < 0 ||
	    process_argv(rec->id.pid, &argv) < 0)
		return 0;
	if (rec->type->argv_name(b, rec->id.pid, argv, &name) <= 0 || !streq(name, rec->name))
		return 0;
	*ret = now;
	return 1;
}

static char *stray_message(Backend *b, const char *name, VmStray kind, const VmmIdentity *id,
			   const VmmVm *rec)
{
	const VmmVmType *t = VMM_BACKEND(b)->type;
	_cleanup_free_ char *sock = vmm_vm_path(b, name, t->socket);
	char *m = NULL;
	int r;

	if (kind == VM_STRAY_NOT_OURS)
		r = asprintf(
			&m,
			"the record names %s pid %d, which runs for this sandbox but is not the process recorded (it started %llu clock ticks after boot, not %llu; binary %s); vmd cannot prove it is its own and leaves it alone, starting no other",
			t->display, (int)id->pid, (unsigned long long)id->start_time,
			(unsigned long long)rec->id.start_time, id->exe);
	else if (id->pid > 0)
		r = asprintf(
			&m,
			"%s pid %d runs for this sandbox (its command line says so), but vmd has no record of it; vmd leaves it alone and starts no other: stop it, or put its vm.json back, then reload vmd",
			t->display, (int)id->pid);
	else
		r = asprintf(
			&m,
			"something listens on %s, but vmd has no record of a %s there; vmd leaves it alone and starts no other: stop it, or put its vm.json back, then reload vmd",
			sock ?: t->socket, t->display);
	return r < 0 ? NULL : m;
}

int vmm_stray_observe(Backend *b, const char *name, const VmmVm *rec, VmObserved *o)
{
	VmmIdentity id;
	VmStray kind;
	int r;

	r = record_impostor(b, rec, &id);
	if (r == 0)
		r = find_stray(b, name, &id);
	if (r <= 0)
		return r;
	kind = rec && rec->state != VM_EXITED && id.pid > 0 && id.pid == rec->id.pid
		       ? VM_STRAY_NOT_OURS
		       : VM_STRAY_RECORD_LOST;
	o->stray_message = stray_message(b, name, kind, &id, rec);
	if (!o->stray_message)
		return -ENOMEM;
	o->stray = kind;
	o->pid = id.pid;
	return 0;
}

int vmm_stray_refuse(Backend *b, const char *name)
{
	_cleanup_free_ char *m = NULL;
	VmmIdentity id;
	int r;

	r = find_stray(b, name, &id);
	if (r <= 0)
		return r;
	m = stray_message(b, name, VM_STRAY_RECORD_LOST, &id, NULL);
	backend_set_error(b, "%s", m ?: "a VMM runs for this sandbox already");
	return -EEXIST;
}
