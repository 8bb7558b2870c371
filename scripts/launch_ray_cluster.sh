#!/usr/bin/env bash
# Start a Ray cluster for effopd-train and submit runs to it.
#
#   bash scripts/launch_ray_cluster.sh head   [--ip ADDR] [--num-gpus N] [--token-auth] [-- RAY_START_ARGS]
#   bash scripts/launch_ray_cluster.sh worker --head-ip ADDR [--ip ADDR] [--num-gpus N] [--token-auth]
#   bash scripts/launch_ray_cluster.sh submit [--head-ip ADDR] [--run-dir DIR] [--no-wait] -- EFFOPD_TRAIN_ARGS
#
# SECURITY. Ray's dashboard serves the job API: whoever reaches its port can submit a job, that is
# run any command on every node of the cluster, as the user who started Ray, and Ray asks for no
# credentials unless token authentication is on. This script therefore binds the dashboard (and so
# the job API), the dashboard agents and the Ray client server to the node's PRIVATE address, never
# to all interfaces: `head` refuses --ip 0.0.0.0, an empty address, and (without
# --allow-non-private-ip) any address outside 10/8, 172.16/12, 192.168/16, 100.64/10 and 127/8; it
# refuses RAY_START_ARGS that rebind the dashboard. `head` and `worker` refuse Ray older than 2.50.0
# (`$RAY --version`): before it (ray-project/ray#55431, #55732; the first try, #55298, was reverted) the
# dashboard agent's HTTP server, which serves the job agent, its gRPC server and the runtime-env agent
# listened on all interfaces whatever --node-ip-address said. Ray's other ports (GCS 6379, raylets,
# object managers, workers, and from Ray 2.55 the dashboard agent's gRPC port again, which Ray binds to
# all interfaces) still need a firewall that keeps them inside the cluster. --token-auth turns on
# Ray's token authentication (Ray >= 2.52; RAY_AUTH_MODE=token) with a token every node must hold
# (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; `ray get-auth-token --generate` makes one).
# Reach the dashboard from elsewhere through an SSH tunnel, never by rebinding it:
#   ssh -L 8265:<head-private-ip>:8265 <head>
#
# No secret passes through this script: logger keys (WANDB_API_KEY, ...) come from the environment
# of the processes Ray starts (export them before `head`/`worker`, or `wandb login` on the head);
# `submit` refuses arguments that carry one, since Ray stores and shows a job's command line.
#
# `submit` runs on the head (or any machine that reaches its private address) and submits
#   cd RUN_DIR && exec effopd-train EFFOPD_TRAIN_ARGS trainer.default_local_dir=RUN_DIR/checkpoints/<project>/<experiment>
# as a Ray job (the last argument only when EFFOPD_TRAIN_ARGS set no trainer.default_local_dir):
# Ray's workers do not run in RUN_DIR but where `ray start` ran on their node, so checkpoints get an
# absolute path. RUN_DIR (default: the current directory) must exist on the head, and for more than
# one node be on a file system all nodes share.
# The address comes from --ip/--head-ip, else $EFFOPD_RAY_IP, else the first private IPv4 address of
# this machine (`hostname -I`). --dry-run prints the commands instead of running them. $RAY names the
# ray executable (default: ray).
set -euo pipefail

PROG="launch_ray_cluster.sh"
RAY_BIN="${RAY:-ray}"
MIN_RAY_VERSION=2.50.0
DEFAULT_GCS_PORT=6379
DEFAULT_DASHBOARD_PORT=8265

die() {
    echo "$PROG: error: $*" >&2
    exit 2
}

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
    echo "See the header of scripts/launch_ray_cluster.sh and docs/cluster.md."
}

is_ipv4() {
    local ip="$1" part
    local -a parts
    [[ "$ip" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
    IFS=. read -r -a parts <<< "$ip"
    for part in "${parts[@]}"; do
        (( 10#$part <= 255 )) || return 1
    done
}

# 10/8, 172.16/12, 192.168/16, 100.64/10 (carrier-grade NAT), 127/8 (this machine only)
is_private_ipv4() {
    local a b
    IFS=. read -r a b _ _ <<< "$1"
    a=$((10#$a))
    b=$((10#$b))
    (( a == 10 || a == 127 )) && return 0
    (( a == 172 && b >= 16 && b <= 31 )) && return 0
    (( a == 192 && b == 168 )) && return 0
    (( a == 100 && b >= 64 && b <= 127 )) && return 0
    return 1
}

# check_bind_address ADDRESS FLAG ALLOW_NON_PRIVATE: the address Ray's services will listen on
check_bind_address() {
    local ip="$1" flag="$2" allow="$3"
    case "$ip" in
        "") die "$flag is empty: give this node's private IPv4 address (Ray's job API must not listen on all interfaces)" ;;
        0.0.0.0 | 0 | "*" | "::" | "[::]" | "::0")
            die "$flag $ip means all interfaces: Ray's dashboard and job API would run code for anyone who reaches this machine; give its private address" ;;
    esac
    is_ipv4 "$ip" || die "$flag $ip is not an IPv4 address (give this node's private IPv4 address)"
    if [[ "$ip" == 0.* ]]; then
        die "$flag $ip is not a usable address: give this node's private IPv4 address"
    fi
    if ! is_private_ipv4 "$ip" && [[ "$allow" != 1 ]]; then
        die "$flag $ip is not a private address (10/8, 172.16/12, 192.168/16, 100.64/10, 127/8): Ray's job API there may be reachable from the internet. Give the node's private address, or pass --allow-non-private-ip if this network is private and firewalled"
    fi
}

detect_private_ip() {
    local candidates ip
    if command -v hostname > /dev/null 2>&1 && candidates="$(hostname -I 2> /dev/null)"; then
        :
    elif command -v ip > /dev/null 2>&1; then
        candidates="$(ip -4 -o addr show scope global 2> /dev/null | awk '{split($4, a, "/"); print a[1]}')"
    else
        candidates=""
    fi
    for ip in $candidates; do
        if is_ipv4 "$ip" && is_private_ipv4 "$ip" && [[ "$ip" != 127.* ]]; then
            echo "$ip"
            return 0
        fi
    done
    return 1
}

# resolve_address GIVEN FLAG ALLOW_NON_PRIVATE: the checked address (given, $EFFOPD_RAY_IP or detected)
resolve_address() {
    local given="$1" flag="$2" allow="$3" ip
    if [[ -n "$given" ]]; then
        ip="$given"
    elif [[ -n "${EFFOPD_RAY_IP+x}" ]]; then
        ip="$EFFOPD_RAY_IP"
        flag="EFFOPD_RAY_IP=$ip:"
    else
        ip="$(detect_private_ip)" || die "found no private IPv4 address on this machine; pass $flag ADDR (its private address)"
        echo "$PROG: detected this machine's private address: $ip" >&2
    fi
    check_bind_address "$ip" "$flag" "$allow"
    echo "$ip"
}

check_port() {
    if ! [[ "$2" =~ ^[0-9]{1,5}$ ]] || (( 10#$2 < 1 || 10#$2 > 65535 )); then
        die "$1 $2 is not a port number (1-65535)"
    fi
}

# version_at_least VERSION MINIMUM: numeric comparison of the leading major.minor.patch
version_at_least() {
    local -a have need
    local i
    IFS=. read -r -a have <<< "${1%%[!0-9.]*}"
    IFS=. read -r -a need <<< "$2"
    for i in 0 1 2; do
        (( 10#${have[i]:-0} > 10#${need[i]} )) && return 0
        (( 10#${have[i]:-0} < 10#${need[i]} )) && return 1
    done
    return 0
}

# Ray before MIN_RAY_VERSION bound the dashboard agents (job agent included) to all interfaces.
check_ray_version() {
    local out version fix="pip install 'ray[default]>=$MIN_RAY_VERSION'"
    out="$("$RAY_BIN" --version 2> /dev/null)" || die "could not run '$RAY_BIN --version' (is Ray installed? $fix; \$RAY names the ray executable)"
    [[ "$out" =~ ([0-9]+\.[0-9]+\.[0-9]+[^[:space:]]*) ]] || die "could not read Ray's version from '$RAY_BIN --version': '$out'"
    version="${BASH_REMATCH[1]}"
    if ! version_at_least "$version" "$MIN_RAY_VERSION"; then
        die "Ray $version is installed; this script needs Ray >= $MIN_RAY_VERSION: older Ray binds the dashboard agents' HTTP and gRPC servers (the job agent, which runs any command it is sent, included) to all interfaces (0.0.0.0) whatever --node-ip-address says. Upgrade on every node: $fix"
    fi
}

# Ray start arguments that would move a service off the checked address are refused.
check_ray_start_extra() {
    local arg
    for arg in "$@"; do
        case "$arg" in
            --dashboard-host* | --node-ip-address* | --address* | --head | --port | --port=* | --ray-debugger-external)
                die "'$arg' after -- is set by this script (or would expose the node); use its options (--ip, --head-ip, --port)" ;;
        esac
    done
}

enable_token_auth() {
    export RAY_AUTH_MODE=token
    if [[ -n "${RAY_AUTH_TOKEN:-}" ]]; then
        echo "$PROG: token authentication on (token from RAY_AUTH_TOKEN)" >&2
    elif [[ -n "${RAY_AUTH_TOKEN_PATH:-}" && -r "${RAY_AUTH_TOKEN_PATH}" ]]; then
        echo "$PROG: token authentication on (token file RAY_AUTH_TOKEN_PATH)" >&2
    elif [[ -r "$HOME/.ray/auth_token" ]]; then
        echo "$PROG: token authentication on (token file ~/.ray/auth_token)" >&2
    else
        die "--token-auth needs a token on this node: RAY_AUTH_TOKEN, a readable RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (make one with 'ray get-auth-token --generate' and copy it to every node)"
    fi
}

# run CMD...: the command, or with --dry-run its printout
run() {
    if [[ "$DRY_RUN" == 1 ]]; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

security_notice() {
    local ip="$1" port="$2" who="anyone who can reach that port"
    if [[ "${RAY_AUTH_MODE:-}" == token ]]; then
        who="anyone who can reach that port and holds the token"
    fi
    cat >&2 << EOF
$PROG: Ray's dashboard and job API: http://$ip:$port (bound to $ip only, not to all interfaces).
$PROG: $who can run any code on every node of this cluster:
$PROG: keep it on the private network (from elsewhere: ssh -L $port:$ip:$port <head>).
EOF
}

# looks_secret ARG: a hydra override or VAR=value whose key names a credential
looks_secret() {
    local key="${1%%=*}"
    [[ "$1" == *=* ]] || return 1
    key="${key##*.}"
    key="${key,,}"
    [[ "$key" =~ ^(.*_)?(api_?key|access_?key|secret(_?key)?|password|passwd|token|auth_?token)$ ]]
}

cmd_head() {
    local ip="" port=$DEFAULT_GCS_PORT dashboard_port=$DEFAULT_DASHBOARD_PORT num_gpus="" allow=0 token=0
    local -a extra=()
    while (( $# )); do
        case "$1" in
            --ip) (( $# >= 2 )) || die "--ip needs an address"; ip="$2"; [[ -n "$ip" ]] || die "--ip is empty: give this node's private IPv4 address"; shift 2 ;;
            --port) (( $# >= 2 )) || die "--port needs a number"; port="$2"; shift 2 ;;
            --dashboard-port) (( $# >= 2 )) || die "--dashboard-port needs a number"; dashboard_port="$2"; shift 2 ;;
            --num-gpus) (( $# >= 2 )) || die "--num-gpus needs a number"; num_gpus="$2"; shift 2 ;;
            --allow-non-private-ip) allow=1; shift ;;
            --token-auth) token=1; shift ;;
            --dry-run) DRY_RUN=1; shift ;;
            --) shift; extra=("$@"); break ;;
            -h | --help) usage; exit 0 ;;
            *) die "head: unknown option '$1'" ;;
        esac
    done
    check_port --port "$port"
    check_port --dashboard-port "$dashboard_port"
    [[ -z "$num_gpus" || "$num_gpus" =~ ^[0-9]+$ ]] || die "--num-gpus $num_gpus is not a number"
    check_ray_start_extra "${extra[@]+"${extra[@]}"}"
    ip="$(resolve_address "$ip" --ip "$allow")"
    check_ray_version
    if (( token )); then
        enable_token_auth
    fi
    security_notice "$ip" "$dashboard_port"
    local -a args=(start --head "--node-ip-address=$ip" "--port=$port" --include-dashboard=true
        "--dashboard-host=$ip" "--dashboard-port=$dashboard_port")
    if [[ -n "$num_gpus" ]]; then
        args+=("--num-gpus=$num_gpus")
    fi
    run "$RAY_BIN" "${args[@]}" "${extra[@]+"${extra[@]}"}"
    local join="bash scripts/launch_ray_cluster.sh worker --head-ip $ip"
    if (( token )); then
        join+=" --token-auth"
    fi
    echo "$PROG: workers join with: $join   submit with: bash scripts/launch_ray_cluster.sh submit --head-ip $ip -- ..." >&2
}

cmd_worker() {
    local ip="" head_ip="" port=$DEFAULT_GCS_PORT num_gpus="" allow=0 token=0 head_given=0
    local -a extra=()
    while (( $# )); do
        case "$1" in
            --head-ip) (( $# >= 2 )) || die "--head-ip needs an address"; head_ip="$2"; head_given=1; shift 2 ;;
            --ip) (( $# >= 2 )) || die "--ip needs an address"; ip="$2"; [[ -n "$ip" ]] || die "--ip is empty: give this node's private IPv4 address"; shift 2 ;;
            --port) (( $# >= 2 )) || die "--port needs a number"; port="$2"; shift 2 ;;
            --num-gpus) (( $# >= 2 )) || die "--num-gpus needs a number"; num_gpus="$2"; shift 2 ;;
            --allow-non-private-ip) allow=1; shift ;;
            --token-auth) token=1; shift ;;
            --dry-run) DRY_RUN=1; shift ;;
            --) shift; extra=("$@"); break ;;
            -h | --help) usage; exit 0 ;;
            *) die "worker: unknown option '$1'" ;;
        esac
    done
    (( head_given )) || die "worker: --head-ip ADDR (the head's private address) is required"
    check_bind_address "$head_ip" --head-ip "$allow"
    check_port --port "$port"
    [[ -z "$num_gpus" || "$num_gpus" =~ ^[0-9]+$ ]] || die "--num-gpus $num_gpus is not a number"
    check_ray_start_extra "${extra[@]+"${extra[@]}"}"
    ip="$(resolve_address "$ip" --ip "$allow")"
    check_ray_version
    if (( token )); then
        enable_token_auth
    fi
    echo "$PROG: this node's dashboard agent (job agent) and runtime-env agent bind to $ip, not to all interfaces." >&2
    local -a args=(start "--address=$head_ip:$port" "--node-ip-address=$ip")
    if [[ -n "$num_gpus" ]]; then
        args+=("--num-gpus=$num_gpus")
    fi
    run "$RAY_BIN" "${args[@]}" "${extra[@]+"${extra[@]}"}"
}

cmd_submit() {
    local head_ip="" dashboard_port=$DEFAULT_DASHBOARD_PORT run_dir="$PWD" no_wait=0 allow=0 token=0 seen_dashdash=0
    local -a train_args=()
    while (( $# )); do
        case "$1" in
            --head-ip) (( $# >= 2 )) || die "--head-ip needs an address"; head_ip="$2"; [[ -n "$head_ip" ]] || die "--head-ip is empty: give the head's private IPv4 address"; shift 2 ;;
            --dashboard-port) (( $# >= 2 )) || die "--dashboard-port needs a number"; dashboard_port="$2"; shift 2 ;;
            --run-dir) (( $# >= 2 )) || die "--run-dir needs a folder"; run_dir="$2"; shift 2 ;;
            --no-wait) no_wait=1; shift ;;
            --allow-non-private-ip) allow=1; shift ;;
            --token-auth) token=1; shift ;;
            --dry-run) DRY_RUN=1; shift ;;
            --) shift; train_args=("$@"); seen_dashdash=1; break ;;
            -h | --help) usage; exit 0 ;;
            *) die "submit: unknown option '$1' (effopd-train's arguments go after --)" ;;
        esac
    done
    if (( ! seen_dashdash || ${#train_args[@]} == 0 )); then
        die "submit: give effopd-train's arguments after --, e.g. -- --config-name examples/<name> data.train_files=..."
    fi
    check_port --dashboard-port "$dashboard_port"
    [[ "$run_dir" == /* ]] || die "--run-dir $run_dir must be an absolute path (it is used on the head)"
    local arg
    for arg in "${train_args[@]}"; do
        if looks_secret "$arg"; then
            die "submit: '${arg%%=*}=...' looks like a secret: Ray stores and shows a job's command line; give secrets to the trainer through its environment (export before 'head', or 'wandb login' on the head)"
        fi
    done
    local has_ckpt_dir=0
    for arg in "${train_args[@]}"; do
        if [[ "$arg" =~ ^[+~]{0,2}trainer\.default_local_dir= ]]; then
            has_ckpt_dir=1
        fi
    done
    if (( ! has_ckpt_dir )); then
        # shellcheck disable=SC2016  # ${trainer.*} are hydra interpolations
        train_args+=("trainer.default_local_dir=${run_dir%/}/checkpoints/"'${trainer.project_name}/${trainer.experiment_name}')
    fi
    head_ip="$(resolve_address "$head_ip" --head-ip "$allow")"
    if (( token )); then
        enable_token_auth
    fi
    security_notice "$head_ip" "$dashboard_port"
    local -a args=(job submit "--address=http://$head_ip:$dashboard_port")
    if (( no_wait )); then
        args+=(--no-wait)
    fi
    # ray quotes each word (shlex.join) and runs the line with /bin/sh on the head: no quoting of ours
    # shellcheck disable=SC2016  # $1 and $@ are for that sh, not for this script
    run "$RAY_BIN" "${args[@]}" -- sh -c 'cd "$1" && shift && exec effopd-train "$@"' effopd-submit \
        "$run_dir" "${train_args[@]}"
}

DRY_RUN=0
(( $# )) || { usage >&2; exit 2; }
command="$1"
shift
case "$command" in
    head) cmd_head "$@" ;;
    worker) cmd_worker "$@" ;;
    submit) cmd_submit "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; die "unknown command '$command' (head, worker or submit)" ;;
esac
