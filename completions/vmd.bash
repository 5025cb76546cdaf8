# SPDX-License-Identifier: MIT
# bash completion for vmd: its commands, each command's options, and their values.
# Installed as share/bash-completion/completions/vmd; tests/test-install.c checks that it
# offers every option each command's --help lists, and that vmd takes every one it offers.

_vmd_manager_opts='--sandboxes --run-dir --state-dir --default-backend --backend-override
	--qemu-binary --qemu-accel --cloud-hypervisor-binary --firecracker-binary --jailer
	--jailer-uid --jailer-gid --jailer-chroot-base --allow-overcommit --trusted-uid
	--trusted-gid'

# The names of the sandboxes the daemon reports on, from its run dir.
_vmd_sandboxes()
{
	local dir=/run/vmd i
	for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
		[[ ${COMP_WORDS[i]} == --run-dir ]] && dir=${COMP_WORDS[i + 1]}
	done
	local d
	for d in "$dir"/*/; do
		[[ -d $d ]] && basename -- "$d"
	done
}

_vmd()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
	local verbs='daemon status plan validate approve-deletions console wait events wake help'
	local verb= i

	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		daemon | status | plan | validate | approve-deletions | console | wait | events | wake | help)
			verb=${COMP_WORDS[i]}
			break
			;;
		esac
	done

	case $prev in
	--sandboxes | --run-dir | --state-dir | --jailer-chroot-base)
		COMPREPLY=($(compgen -d -- "$cur"))
		return
		;;
	--metrics-file | --dhcp-leases)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--qemu-binary | --cloud-hypervisor-binary | --firecracker-binary | --jailer)
		COMPREPLY=($(compgen -c -- "$cur"))
		return
		;;
	--default-backend | --backend-override)
		COMPREPLY=($(compgen -W 'qemu cloud-hypervisor firecracker noop' -- "$cur"))
		return
		;;
	--qemu-accel)
		COMPREPLY=($(compgen -W 'auto kvm tcg' -- "$cur"))
		return
		;;
	--log-target)
		COMPREPLY=($(compgen -W 'auto journal console' -- "$cur"))
		return
		;;
	--trusted-uid | --jailer-uid | --vmm-user)
		COMPREPLY=($(compgen -u -- "$cur"))
		return
		;;
	--trusted-gid | --jailer-gid)
		COMPREPLY=($(compgen -g -- "$cur"))
		return
		;;
	--for)
		COMPREPLY=($(compgen -W 'ready running stopped deleted applied suspended' -- "$cur"))
		return
		;;
	--resync | --grace | --max-deletions | --max-disruptions | --console-log-size | --timeout)
		return
		;;
	esac

	local opts
	case $verb in
	'')
		COMPREPLY=($(compgen -W "$verbs --help --version" -- "$cur"))
		return
		;;
	daemon)
		opts="$_vmd_manager_opts --resync --grace --max-deletions --max-disruptions --rollback
			--log-target --metrics-file --dhcp-leases --console-log-size --vmm-user --help"
		;;
	plan)
		opts="$_vmd_manager_opts --json --help"
		;;
	status)
		opts='--run-dir --json --watch --help'
		;;
	events)
		opts='--json --run-dir --help'
		;;
	validate)
		opts='--json --default-backend --sandboxes --trusted-uid --trusted-gid --skip-images --help'
		;;
	approve-deletions | wake)
		opts='--run-dir --help'
		;;
	console)
		opts='--run-dir --log --help'
		;;
	wait)
		opts='--for --timeout --run-dir --sandboxes --help'
		;;
	help)
		return
		;;
	esac

	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$opts" -- "$cur"))
	elif [[ $verb == validate ]]; then
		COMPREPLY=($(compgen -f -- "$cur"))
	elif [[ $verb == status || $verb == approve-deletions || $verb == console || $verb == wait || $verb == wake ]]; then
		COMPREPLY=($(compgen -W "$(_vmd_sandboxes)" -- "$cur"))
	fi
}

complete -F _vmd vmd
