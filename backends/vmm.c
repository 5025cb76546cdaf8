/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "util.h"
#include "vmm.h"

int vmm_pidfd_open(pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	return fd < 0 ? -errno : fd;
}

int vmm_kill(int pidfd, int sig)
{
	return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

/* The drop to user: groups first, then the gid, then the uid that takes the capabilities. */
static int drop_to(const VmmUser *user)
{
	if (!user || user->uid == VMM_USER_UNSET)
		return 0;
	if (setgroups(0, NULL) < 0 || setresgid(user->gid, user->gid, user->gid) < 0 ||
	    setresuid(user->uid, user->uid, user->uid) < 0)
		return -1;
	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

/* In the child, between fork and exec: only async-signal-safe calls. */
_Noreturn static void exec_child(char *const argv[], char *const envp[], const VmmUser *user,
				 int log_fd, int null_fd, int out_fd, int err_fd,
				 const int *pass_fds, size_t n_pass)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	int high[VMM_PASS_FDS_MAX], first_free = VMM_FD_FIRST + (int)n_pass;
	int e, report = err_fd; /* where a failure goes: 3 once it is there */
	sigset_t none;

	(void)setsid();
	for (int s = 1; s < NSIG; s++)
		(void)sigaction(s, &dfl, NULL);
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	/* Out of the way of the numbers they get, which others may hold now. */
	for (size_t i = 0; i < n_pass; i++)
		if ((high[i] = fcntl(pass_fds[i], F_DUPFD_CLOEXEC, first_free)) < 0)
			goto fail;
	if ((err_fd = fcntl(err_fd, F_DUPFD_CLOEXEC, first_free)) < 0)
		goto fail;
	if (dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(log_fd, 2) < 0)
		goto fail;
	/* err_fd is close-on-exec: it closes itself when the exec succeeds. */
	if (dup3(err_fd, 3, O_CLOEXEC) < 0)
		goto fail;
	report = 3;
	/* dup2() leaves the copies inheritable: the VMM gets exactly these. */
	for (size_t i = 0; i < n_pass; i++)
		if (dup2(high[i], VMM_FD_FIRST + (int)i) < 0)
			goto fail;
	if (syscall(SYS_close_range, first_free, ~0u, 0) < 0)
		goto fail;
	if (drop_to(user) < 0)
		goto fail;
	execve(argv[0], argv, envp);
fail:
	e = errno;
	(void)!write(report, &e, sizeof(e));
	_exit(127);
}

int vmm_spawn(char *const argv[], const char *log_path, const int *pass_fds, size_t n_pass,
	      pid_t *ret_pid, int *ret_pidfd)
{
	return vmm_spawn_logging(argv, log_path, NULL, NULL, pass_fds, n_pass, ret_pid, ret_pidfd);
}

int vmm_environment(char ***ret)
{
	_cleanup_(strv_freep) char **env = NULL;
	const char *path = getenv("PATH");
	extern char **environ;

	/* No LANG: the C locale, which a VMM loads from no file. */
	if (strv_extendf(&env, "PATH=%s", path && *path ? path : "/usr/sbin:/usr/bin:/sbin:/bin") < 0)
		return -ENOMEM;
	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, "VMD_SIM_", 8) == 0 && strv_extendf(&env, "%s", *e) < 0)
			return -ENOMEM;
	*ret = TAKE_PTR(env);
	return 0;
}

int vmm_user_parse(const char *arg, VmmUser *ret)
{
	unsigned long uid, gid;
	struct passwd *pw;
	char *end = NULL;

	if (!arg || !*arg)
		return -EINVAL;
	if (isdigit((unsigned char)arg[0])) {
		errno = 0;
		uid = strtoul(arg, &end, 10);
		if (errno || *end != ':' || !isdigit((unsigned char)end[1]) || uid >= UINT32_MAX)
			return -EINVAL;
		gid = strtoul(end + 1, &end, 10);
		if (errno || *end || gid >= UINT32_MAX)
			return -EINVAL;
		*ret = (VmmUser){ .uid = (uid_t)uid, .gid = (gid_t)gid };
		return 0;
	}
	errno = 0;
	pw = getpwnam(arg);
	if (!pw)
		return errno && errno != ENOENT && errno != ESRCH ? -errno : -ENOENT;
	*ret = (VmmUser){ .uid = pw->pw_uid, .gid = pw->pw_gid };
	return 0;
}

int vmm_spawn_logging(char *const argv[], const char *log_path, const char *out_path,
		      const VmmUser *user, const int *pass_fds, size_t n_pass, pid_t *ret_pid,
		      int *ret_pidfd)
{
	_cleanup_close_ int log_fd = -EBADF, null_fd = -EBADF, pidfd = -EBADF, out_fd = -EBADF;
	_cleanup_(strv_freep) char **envp = NULL;
	int pipefd[2], e;
	ssize_t n;
	pid_t pid;

	e = vmm_environment(&envp);
	if (e < 0)
		return e;

	log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
	if (log_fd < 0)
		return -errno;
	if (n_pass > VMM_PASS_FDS_MAX)
		return -E2BIG;
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (null_fd < 0)
		return -errno;
	out_fd = out_path ? open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0600)
			  : fcntl(null_fd, F_DUPFD_CLOEXEC, 3);
	if (out_fd < 0)
		return -errno;
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		e = errno;
		close(pipefd[0]);
		close(pipefd[1]);
		return -e;
	}
	if (pid == 0) {
		close(pipefd[0]);
		exec_child(argv, envp, user, log_fd, null_fd, out_fd, pipefd[1], pass_fds, n_pass);
	}
	close(pipefd[1]);
	do
		n = read(pipefd[0], &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	close(pipefd[0]);
	if (n == sizeof(e)) {
		(void)waitpid(pid, NULL, 0);
		return -e;
	}
	pidfd = vmm_pidfd_open(pid);
	if (pidfd < 0) {
		int r = pidfd;

		(void)kill(pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
		return r;
	}
	*ret_pid = pid;
	*ret_pidfd = TAKE_FD(pidfd);
	return 0;
}

int vmm_identity(pid_t pid, VmmIdentity *ret)
{
	_cleanup_free_ char *stat = NULL;
	char path[64], exe[sizeof(ret->exe)];
	const char *p;
	unsigned long long start;
	char state;
	ssize_t n;
	int r;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	r = read_file(path, 4096, &stat, NULL);
	if (r < 0)
		return r == -ENOENT ? -ESRCH : r;
	/* The command name may hold spaces and parentheses: the fields start after the last ')'. */
	p = strrchr(stat, ')');
	if (!p || sscanf(p + 1, " %c", &state) != 1)
		return -EBADMSG;
	if (state == 'Z' || state == 'X')
		return -ESRCH;
	for (int field = 3; field <= 22; field++) { /* p: the space before field 22, starttime */
		p = strchr(p + 1, ' ');
		if (!p)
			return -EBADMSG;
	}
	if (sscanf(p + 1, "%llu", &start) != 1)
		return -EBADMSG;

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	n = readlink(path, exe, sizeof(exe) - 1);
	if (n < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	exe[n] = '\0';
	/* A VMM whose binary was upgraded under it is still the same process. */
	if (n > 10 && streq(exe + n - 10, " (deleted)"))
		exe[n - 10] = '\0';

	*ret = (VmmIdentity){ .pid = pid, .start_time = start };
	memcpy(ret->exe, exe, sizeof(exe));
	return 0;
}

bool vmm_identity_matches(const VmmIdentity *id)
{
	VmmIdentity now;

	if (id->pid <= 0 || vmm_identity(id->pid, &now) < 0)
		return false;
	return now.start_time == id->start_time && streq(now.exe, id->exe);
}

int vmm_process_link(pid_t pid, const char *link, char **ret)
{
	char path[64], buf[4096];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, link);
	n = readlink(path, buf, sizeof(buf) - 1);
	if (n < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	buf[n] = '\0';
	*ret = strdup(buf);
	return *ret ? 0 : -ENOMEM;
}

int vmm_foreach_process(int (*fn)(pid_t pid, char **argv, void *userdata), void *userdata)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t self = getpid();
	int r = 0;

	if (!d)
		return -errno;
	while (r == 0 && (e = readdir(d))) {
		_cleanup_free_ char **argv = NULL;
		pid_t pid;

		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		pid = (pid_t)atoi(e->d_name);
		/* Gone meanwhile, or not ours to read: it is no VMM of ours either way. */
		if (pid == self || process_argv(pid, &argv) < 0)
			continue;
		r = fn(pid, argv, userdata);
	}
	closedir(d);
	return r;
}

/* Whether a connection to the socket at path is taken (its backlog full counts): 0, or -errno. */
static int socket_probe(const char *path)
{
	int fd = unix_connect_nofollow(path); /* a VMM's dir is the VMM's: no link of its own */

	if (fd < 0)
		return fd == -EAGAIN ? 0 : fd;
	close(fd);
	return 0;
}

bool vmm_socket_is_listening(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
		return false;
	/* A full backlog (a VMM that hangs, its one client slot taken) is someone listening. */
	return socket_probe(path) == 0;
}

int vmm_reap(int pidfd, int *ret_status)
{
	siginfo_t si = {};

	if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG) < 0)
		return -errno;
	if (si.si_pid == 0)
		return 0;
	*ret_status = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
	return 1;
}

bool vmm_has_exited(int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	return poll(&p, 1, 0) > 0;
}

int vmm_remove_stale_socket(const char *dir, const char *path)
{
	size_t dl = strlen(dir);
	struct stat st;
	int r;

	if (strncmp(path, dir, dl) != 0 || path[dl] != '/' || strstr(path, "/../"))
		return -EPERM;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	r = socket_probe(path);
	if (r == 0)
		return -EADDRINUSE;
	if (r != -ECONNREFUSED)
		return r;
	return unlink(path) < 0 && errno != ENOENT ? -errno : 1;
}

int vmm_find_binary(const char *name, char **ret)
{
	_cleanup_free_ char *path_env = NULL;
	char *state = NULL;

	if (strchr(name, '/')) {
		char *abs = realpath(name, NULL);

		if (!abs)
			return -errno;
		if (access(abs, X_OK) < 0) {
			free(abs);
			return -errno;
		}
		*ret = abs;
		return 0;
	}
	path_env = strdup(getenv("PATH") ?: "/usr/local/bin:/usr/bin:/bin");
	if (!path_env)
		return -ENOMEM;
	for (char *d = strtok_r(path_env, ":", &state); d; d = strtok_r(NULL, ":", &state)) {
		_cleanup_free_ char *p = NULL;

		if (asprintf(&p, "%s/%s", d, name) < 0)
			return -ENOMEM;
		if (access(p, X_OK) == 0)
			return vmm_find_binary(p, ret);
	}
	return -ENOENT;
}
