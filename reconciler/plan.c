/* SPDX-License-Identifier: MIT */
#include "plan.h"
#include "spec-json.h"

const char *const action_type_table[_ACTION_TYPE_MAX] = {
	[ACTION_START] = "start",
	[ACTION_STOP] = "stop",
	[ACTION_RESTART] = "restart",
	[ACTION_PAUSE] = "pause",
	[ACTION_RESUME] = "resume",
	[ACTION_DISK_ADD] = "disk-add",
	[ACTION_DISK_UPDATE] = "disk-update",
	[ACTION_DISK_REMOVE] = "disk-remove",
	[ACTION_NET_ADD] = "net-add",
	[ACTION_NET_REMOVE] = "net-remove",
	[ACTION_RESIZE] = "resize",
	[ACTION_CLEANUP] = "cleanup",
	[ACTION_SUSPEND] = "suspend",
	[ACTION_WAKE] = "wake",
	[ACTION_DROP_SNAPSHOT] = "drop-snapshot",
	[ACTION_SAVE_TEMPLATE] = "save-template",
};
DEFINE_STRING_TABLE(action_type, ActionType, _ACTION_TYPE_MAX)

bool action_is_destructive(ActionType t)
{
	return IN_SET(t, ACTION_STOP, ACTION_RESTART, ACTION_DISK_REMOVE, ACTION_NET_REMOVE,
		      ACTION_DISK_UPDATE, ACTION_CLEANUP, ACTION_DROP_SNAPSHOT);
}

typedef struct Planner {
	const PlanInput *in;
	uint64_t now;
	uint64_t grace;
	Plan *plan;
} Planner;

/* Add an action, or hold it back when it is destructive and the grace window is open. */
static bool emit(Planner *p, ActionType t, const char *device, const char *reason)
{
	Plan *plan = p->plan;
	uint64_t due = p->in->desired_since + p->grace;

	if (t == ACTION_STOP && p->in->stop_waits) {
		/* Those that wait for it (spec.after) go first; their stops bring it back here. */
		plan->stop_waits = true;
		return false;
	}
	if (action_is_destructive(t) && p->now < due) {
		plan->held = true;
		if (plan->wake_at == 0 || due < plan->wake_at)
			plan->wake_at = due;
		return false;
	}
	if (plan->n_actions < PLAN_ACTIONS_MAX)
		plan->actions[plan->n_actions++] = (Action){ t, device, reason };
	return true;
}

bool plan_fits_host(const SandboxSpec *spec, const HostResources *host)
{
	return (host->memory == 0 || spec->memory <= host->memory) &&
	       (host->cpus == 0 || spec->vcpus <= host->cpus);
}

bool plan_after_ready(const SandboxSpec *spec, const char *const *ready)
{
	for (size_t i = 0; i < spec->n_after; i++) {
		bool found = false;

		for (size_t k = 0; ready && ready[k] && !found; k++)
			found = streq(ready[k], spec->after[i].name);
		if (!found)
			return false;
	}
	return true;
}

/* Whether a boot of want may begin: each sandbox of its spec.after is Ready; if not, it waits. */
static bool after_ready(Planner *p, const SandboxSpec *want)
{
	if (plan_after_ready(want, p->in->ready))
		return true;
	p->plan->waits_for_after = true;
	return false;
}

/* Whether a VM of want may be started (or resized to it) here; if not, the plan says why. */
static bool admitted(Planner *p, const SandboxSpec *want)
{
	if (!p->in->host || plan_fits_host(want, p->in->host))
		return true;
	p->plan->insufficient = true;
	return false;
}

/*
 * A disk from an image is the same while its image, the image's format and its size are:
 * its copy's path and format are its backend's (the file has neither), and ephemeral
 * matters only when the sandbox goes.
 */
static bool disk_equal(const DiskSpec *a, const DiskSpec *b)
{
	if (a->image || b->image)
		return streq_ptr(a->image, b->image) && a->image_format == b->image_format &&
		       a->size == b->size && a->read_only == b->read_only;
	return streq(a->path, b->path) && a->read_only == b->read_only && a->format == b->format;
}

/* A disk from an image added or changed: its copy is made by a start, never live. */
static bool disk_needs_boot(const DiskSpec *want, const DiskSpec *have)
{
	return (want->image || (have && have->image)) && (!have || !disk_equal(want, have));
}

static bool net_equal(const NetSpec *a, const NetSpec *b)
{
	return a->type == b->type && streq(a->tap, b->tap) && streq(a->bridge, b->bridge) &&
	       streq(a->link, b->link) && memcmp(a->mac, b->mac, 6) == 0;
}

static bool images_changed(const SandboxSpec *want, const SandboxSpec *have)
{
	for (size_t i = 0; i < want->n_disks; i++)
		if (disk_needs_boot(&want->disks[i], spec_find_disk(have, want->disks[i].id)))
			return true;
	return false;
}

/* The same disk but for its backing path. */
static bool disk_path_changed(const DiskSpec *a, const DiskSpec *b)
{
	if (a->image || b->image)
		return false;
	return !streq(a->path, b->path) && a->read_only == b->read_only && a->format == b->format;
}

/*
 * What only a new boot can change, resize aside: the seed and credentials are read at boot,
 * and spec.resources goes into the VMM's scope as it is made (reconciler/vm-scope.c).
 */
static bool boot_config_equal(const SandboxSpec *a, const SandboxSpec *b)
{
	return a->backend == b->backend && streq_ptr(a->kernel, b->kernel) &&
	       streq_ptr(a->initrd, b->initrd) && streq_ptr(a->cmdline, b->cmdline) &&
	       a->guest_agent == b->guest_agent && spec_provision_equal(a, b) &&
	       memcmp(&a->resources, &b->resources, sizeof(a->resources)) == 0;
}

static bool size_equal(const SandboxSpec *a, const SandboxSpec *b)
{
	return a->vcpus == b->vcpus && a->memory == b->memory;
}

/* Whether the VMM can grow the VM's memory from have to want in one go (its step). */
static bool growth_fits(const VmObserved *o, uint64_t have, uint64_t want)
{
	if (o->memory_step == 0 || want <= have)
		return true;
	return (want - have) % o->memory_step == 0 && o->memory_grows_left > 0;
}

/* Whether the VM can take want's size without a new boot. */
static bool resize_fits(const Planner *p, const SandboxSpec *want, const SandboxSpec *have)
{
	const VmObserved *o = p->in->observed;

	if (!(p->in->caps & BACKEND_CAP_RESIZE))
		return false;
	return (o->min_vcpus == 0 || want->vcpus >= o->min_vcpus) &&
	       (o->max_vcpus == 0 || want->vcpus <= o->max_vcpus) &&
	       (o->min_memory == 0 || want->memory >= o->min_memory) &&
	       (o->max_memory == 0 || want->memory <= o->max_memory) &&
	       growth_fits(o, have->memory, want->memory);
}

/* Whether every difference between desired and running can be applied live. */
static bool live_applicable(const Planner *p, const SandboxSpec *want, const SandboxSpec *have)
{
	BackendCaps caps = p->in->caps;
	bool disks_differ = want->n_disks != have->n_disks,
	     nets_differ = want->n_networks != have->n_networks;

	if (!boot_config_equal(want, have))
		return false;
	if (!size_equal(want, have) && !resize_fits(p, want, have))
		return false;
	if (images_changed(want, have))
		return false;
	for (size_t i = 0; i < want->n_disks && !disks_differ; i++) {
		const DiskSpec *d = spec_find_disk(have, want->disks[i].id);

		disks_differ = !d || (!disk_equal(d, &want->disks[i]) &&
				      !(disk_path_changed(d, &want->disks[i]) &&
					(caps & BACKEND_CAP_DISK_PATH)));
	}
	for (size_t i = 0; i < want->n_networks && !nets_differ; i++) {
		const NetSpec *n = spec_find_net(have, want->networks[i].id);

		nets_differ = !n || !net_equal(n, &want->networks[i]);
	}
	return (!disks_differ || (caps & BACKEND_CAP_DISK_HOTPLUG)) &&
	       (!nets_differ || (caps & BACKEND_CAP_NET_HOTPLUG));
}

/*
 * Hot-plug the differences: removals first (a changed device is removed and added back
 * under its id), and an add of a changed device only once its removal is done.
 */
static void plan_devices(Planner *p, const SandboxSpec *want, const SandboxSpec *have)
{
	for (size_t i = 0; i < have->n_disks; i++) {
		const DiskSpec *w = spec_find_disk(want, have->disks[i].id);

		if (!w)
			emit(p, ACTION_DISK_REMOVE, have->disks[i].id, "disk removed from the file");
		else if (disk_path_changed(w, &have->disks[i]) &&
			 (p->in->caps & BACKEND_CAP_DISK_PATH))
			emit(p, ACTION_DISK_UPDATE, w->id, "disk path changed in the file");
		else if (!disk_equal(w, &have->disks[i]) &&
			 emit(p, ACTION_DISK_REMOVE, w->id, "disk changed in the file"))
			emit(p, ACTION_DISK_ADD, w->id, "disk changed in the file");
	}
	for (size_t i = 0; i < want->n_disks; i++)
		if (!spec_find_disk(have, want->disks[i].id))
			emit(p, ACTION_DISK_ADD, want->disks[i].id, "disk added to the file");

	for (size_t i = 0; i < have->n_networks; i++) {
		const NetSpec *w = spec_find_net(want, have->networks[i].id);

		if (!w)
			emit(p, ACTION_NET_REMOVE, have->networks[i].id,
			     "network removed from the file");
		else if (!net_equal(w, &have->networks[i]) &&
			 emit(p, ACTION_NET_REMOVE, w->id, "network changed in the file"))
			emit(p, ACTION_NET_ADD, w->id, "network changed in the file");
	}
	for (size_t i = 0; i < want->n_networks; i++)
		if (!spec_find_net(have, want->networks[i].id))
			emit(p, ACTION_NET_ADD, want->networks[i].id, "network added to the file");

	if (size_equal(want, have) || !admitted(p, want))
		return;
	if (p->in->resize_retry_at > p->now) {
		/* The VMM said it is busy with the last one: later; the rest goes on meanwhile. */
		p->plan->resize_waits = true;
		if (p->plan->wake_at == 0 || p->in->resize_retry_at < p->plan->wake_at)
			p->plan->wake_at = p->in->resize_retry_at;
		return;
	}
	emit(p, ACTION_RESIZE, NULL, "vcpus or memory changed in the file");
}

/* A VM runs (or is paused) and the file wants it up: bring it in line with the file. */
static void plan_running(Planner *p)
{
	const SandboxSpec *want = p->in->desired, *have = p->in->observed->config;
	bool paused = p->in->observed->state == VM_PAUSED;

	if (want->state == SANDBOX_SUSPENDED) {
		/* Saved as it runs: what else changed in the file waits for the wake. */
		if ((p->in->caps & BACKEND_CAP_SUSPEND) && !p->in->observed->busy)
			emit(p, ACTION_SUSPEND, NULL, "spec.state is suspended");
		return;
	}
	if (have && !live_applicable(p, want, have)) {
		bool restart = want->update_policy == UPDATE_RESTART || p->in->rollback;

		/* A restart that could not start it again is not begun: it keeps running. */
		if (restart && admitted(p, want)) {
			/* Nor one that would have to wait for spec.after's sandboxes to start it. */
			if (!after_ready(p, want))
				return;
			/* Nor one beyond the host's disruption budget: it waits for a slot. */
			if (p->in->no_disruption_slot)
				p->plan->disruption_waits = true;
			else
				emit(p, ACTION_RESTART, NULL,
				     p->in->rollback
					     ? "rolling back to the last Ready generation"
					     : "a change needs a new boot (updatePolicy restart)");
			return;
		}
		/* on-next-boot: leave it running as it is; the status says a restart is due. */
		if (!restart)
			p->plan->restart_required = true;
		if (images_changed(want, have))
			p->plan->restart_why =
				"a disk's image or size changed: its copy is made at the next start, and the copy before is kept beside it (updatePolicy on-next-boot)";
		else if (!size_equal(want, have) && (p->in->caps & BACKEND_CAP_RESIZE) &&
			 !growth_fits(p->in->observed, have->memory, want->memory))
			p->plan->restart_why =
				"the memory change is not a whole number of the VMM's hot-add steps, or it has none left (Cloud Hypervisor: 128 MiB, 8 per boot); it applies at the next start (updatePolicy on-next-boot)";
	} else if (have && !p->in->observed->busy)
		/* A hot-unplug in flight settles first: its device is still there until then. */
		plan_devices(p, want, have);

	if (want->state == SANDBOX_RUNNING && paused)
		emit(p, ACTION_RESUME, NULL, "spec.state is running");
	else if (want->state == SANDBOX_PAUSED && !paused && (p->in->caps & BACKEND_CAP_PAUSE))
		emit(p, ACTION_PAUSE, NULL, "spec.state is paused");
	else if (want->state == SANDBOX_STOPPED)
		emit(p, ACTION_STOP, NULL, "spec.state is stopped");
	else if (p->in->template_due && p->plan->n_actions == 0 && !p->plan->restart_required)
		emit(p, ACTION_SAVE_TEMPLATE, NULL,
		     "startFrom is snapshot and it is Ready: its template is saved");
}

/* Nothing runs: start it if the file and the restart policy say so. */
static void plan_not_running(Planner *p)
{
	const SandboxSpec *want = p->in->desired;
	const VmObserved *o = p->in->observed;
	const char *reason = "spec.state is running";

	/* Nothing runs, nothing to save: it stays stopped. */
	if (IN_SET(want->state, SANDBOX_STOPPED, SANDBOX_SUSPENDED))
		return;
	if (p->in->template_resume)
		/* Its VMM ended with the save of its template: it runs on from there. */
		reason = "its template was saved: it runs on from it";
	else if (p->in->boot_afresh)
		reason = "its snapshot could not be woken (WakeFailed): it boots afresh";
	else if (o->state == VM_EXITED && o->generation == p->in->generation) {
		/* It ran this very spec and exited: the restart policy decides. */
		if (want->restart_policy == RESTART_NEVER)
			return;
		if (want->restart_policy == RESTART_ON_FAILURE && o->exit_status == 0)
			return;
		reason = want->restart_policy == RESTART_ALWAYS ? "exited; restartPolicy always"
								: "failed; restartPolicy on-failure";
	} else if (o->state == VM_EXITED)
		reason = "the file changed since it exited";

	/* Refused before any VMM is spawned: the host cannot hold it. */
	if (!admitted(p, want))
		return;
	/* A first start, a restart after an exit alike: spec.after's sandboxes are Ready first. */
	if (!after_ready(p, want))
		return;
	if (emit(p, ACTION_START, NULL, reason) && want->state == SANDBOX_PAUSED &&
	    (p->in->caps & BACKEND_CAP_PAUSE))
		emit(p, ACTION_PAUSE, NULL, "spec.state is paused");
}

/* Busy or unresponsive: a stop, if the file asks for one, and nothing else. */
static void plan_stop_only(Planner *p)
{
	const SandboxSpec *want = p->in->desired;
	const VmObserved *o = p->in->observed;

	if (o->job == BACKEND_OP_STOP || !IN_SET(o->state, VM_STARTING, VM_RUNNING, VM_PAUSED))
		return;
	if (!want)
		emit(p, ACTION_STOP, NULL, "its file was removed");
	else if (want->state == SANDBOX_STOPPED)
		emit(p, ACTION_STOP, NULL, "spec.state is stopped");
}

/* Whether the disks of want are the snapshot's, as it was saved: each id, the same disk. */
static bool snapshot_disks_match(const SandboxSpec *want, const SandboxSpec *saved)
{
	if (want->n_disks != saved->n_disks)
		return false;
	for (size_t i = 0; i < want->n_disks; i++) {
		const DiskSpec *d = spec_find_disk(saved, want->disks[i].id);

		if (!d || !disk_equal(d, &want->disks[i]))
			return false;
	}
	return true;
}

bool plan_template_matches(const Snapshot *t, const SandboxSpec *want)
{
	if (t->backend != want->backend || t->boot_hash != snapshot_boot_hash(want) ||
	    !snapshot_disks_match(want, t->config) || t->config->n_networks != want->n_networks)
		return false;
	for (size_t i = 0; i < want->n_networks; i++) {
		const NetSpec *n = spec_find_net(t->config, want->networks[i].id);

		if (!n || !net_equal(n, &want->networks[i]))
			return false;
	}
	return true;
}

/* The snapshot belongs to other disks (or another backend): wake it afresh, or not at all. */
static void plan_wake_refused(Planner *p)
{
	const SandboxSpec *want = p->in->desired;

	if (want->update_policy == UPDATE_RESTART) {
		if (admitted(p, want) &&
		    emit(p, ACTION_DROP_SNAPSHOT, NULL,
			 "its disks changed since it was suspended: it boots afresh (updatePolicy restart)") &&
		    emit(p, ACTION_START, NULL, "its snapshot belonged to other disks") &&
		    want->state == SANDBOX_PAUSED && (p->in->caps & BACKEND_CAP_PAUSE))
			emit(p, ACTION_PAUSE, NULL, "spec.state is paused");
		return;
	}
	p->plan->restart_required = true;
	p->plan->restart_why =
		"its disks changed in the file since it was suspended, and its snapshot belongs to the disks as they were: it stays suspended until they are back (updatePolicy on-next-boot); updatePolicy restart boots it afresh, state stopped drops the snapshot";
}

/* It has a snapshot, and nothing runs: it is suspended. */
static void plan_suspended(Planner *p)
{
	const SandboxSpec *want = p->in->desired;
	const Snapshot *snap = p->in->snapshot;

	if (!want) {
		emit(p, ACTION_DROP_SNAPSHOT, NULL, "its file was removed");
		return;
	}
	if (want->state == SANDBOX_SUSPENDED)
		return;
	if (want->state == SANDBOX_STOPPED) {
		emit(p, ACTION_DROP_SNAPSHOT, NULL, "spec.state is stopped");
		return;
	}
	if (snap->backend != want->backend || !snapshot_disks_match(want, snap->config)) {
		plan_wake_refused(p);
		return;
	}
	/* It comes back as it was saved; the changes since follow once it runs. */
	if (admitted(p, snap->config))
		emit(p, ACTION_WAKE, NULL,
		     want->state == SANDBOX_PAUSED ? "spec.state is paused"
						   : "spec.state is running");
}

void plan_sandbox(const PlanInput *in, uint64_t now, uint64_t grace, Plan *ret)
{
	Planner p = { .in = in, .now = now, .grace = grace, .plan = ret };
	VmState state = in->observed->state;

	*ret = (Plan){};
	if (in->retry_at > now) {
		/* Backing off after a failure: nothing until then. */
		ret->held = true;
		ret->wake_at = in->retry_at;
		return;
	}
	if (in->observed->job == BACKEND_OP_ADOPT)
		return; /* not proven its own yet: nothing is done to it */
	if (in->observed->job != BACKEND_OP_NONE || in->observed->unresponsive ||
	    IN_SET(state, VM_STARTING, VM_STOPPING)) {
		/*
		 * An operation is under way (its end brings us back), or the VMM does not answer:
		 * only a stop may cut in, so that a removed file still ends a VM whatever it does.
		 */
		plan_stop_only(&p);
		return;
	}

	if (in->snapshot && in->observed->restoring && IN_SET(state, VM_RUNNING, VM_PAUSED)) {
		/* A wake cut short (vmd died under it): not a VM, but the snapshot. Again. */
		emit(&p, ACTION_STOP, NULL, "its wake was cut short: it is woken again");
		return;
	}
	if (in->snapshot && !IN_SET(state, VM_RUNNING, VM_PAUSED)) {
		plan_suspended(&p);
		return;
	}
	if (in->snapshot && ret->n_actions < PLAN_ACTIONS_MAX)
		/* It runs: woken, and a vmd died before it dropped the snapshot. Never held. */
		ret->actions[ret->n_actions++] =
			(Action){ ACTION_DROP_SNAPSHOT, NULL,
				  "its VM runs again: the snapshot is stale" };
	if (!in->desired) {
		if (IN_SET(state, VM_RUNNING, VM_PAUSED))
			emit(&p, ACTION_STOP, NULL, "its file was removed");
		else if (state == VM_EXITED)
			emit(&p, ACTION_CLEANUP, NULL, "its file was removed");
		return;
	}
	if (IN_SET(state, VM_RUNNING, VM_PAUSED))
		plan_running(&p);
	else
		plan_not_running(&p);
}
