#!/usr/bin/env bash
# Build a dali-mixup image and, optionally, run a command in it.
#
#   docker/build.sh cpu|gpu [OPTIONS] [-- COMMAND [ARGS...]]
#
# Options:
#   --cuda 12|13        the GPU image's CUDA major (build argument CUDA_MAJOR) [12]
#   --tag NAME          the image name [dali-mixup:cpu, dali-mixup:gpu (CUDA 12), dali-mixup:gpu-cu13]
#   --local-base        no image registry: build FROM localhost/debian-py:bookworm, a Debian
#                       bookworm with python3 made here by debootstrap when missing (needs root)
#   --torch-index URL   the index torch==2.13.0 comes from (build argument TORCH_INDEX)
#   --torch-wheels DIR  (cpu) a folder with a CPU torch wheel, mounted into the build and
#                       searched too (podman only: docker build cannot mount folders)
#   --dry-run           print the build command and stop (nothing is built or created)
#   -- COMMAND...       run COMMAND in the built image (the GPU image gets the GPUs)
#
# Environment: ENGINE builds (docker or podman; docker when its daemon answers, else podman),
# RUNNER runs (docker, podman, or buildah where no container runtime works: no GPUs there).
# With podman the build uses chroot isolation, the host's network and CA certificates (works
# without cgroups or a daemon).
#
# Examples:
#   docker/build.sh cpu -- dali-mixup demo --quick
#   docker/build.sh gpu --cuda 13 -- dali-mixup gpu-check
#   RUNNER=buildah docker/build.sh cpu --local-base --torch-index https://pypi.org/simple \
#       --torch-wheels /opt/wheels -- dali-mixup demo --quick
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "docker/build.sh: $*" >&2; exit 2; }

[ $# -ge 1 ] || die "which image? expected 'cpu' or 'gpu' as the first argument"
kind=$1; shift
case "$kind" in cpu|gpu) ;; *) die "the image must be 'cpu' or 'gpu', got '$kind'" ;; esac

cuda=12 tag="" local_base=0 torch_index="" torch_wheels="" dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) cuda=${2:?--cuda needs 12 or 13}; shift 2 ;;
    --tag) tag=${2:?--tag needs a name}; shift 2 ;;
    --local-base) local_base=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    --torch-index) torch_index=${2:?--torch-index needs a URL}; shift 2 ;;
    --torch-wheels) torch_wheels=${2:?--torch-wheels needs a folder}; shift 2 ;;
    --) shift; break ;;
    *) die "unknown option '$1' (see the top of docker/build.sh)" ;;
  esac
done
case "$cuda" in 12|13) ;; *) die "--cuda must be 12 or 13, got '$cuda'" ;; esac
[ "$kind" = gpu ] || [ "$cuda" = 12 ] || die "--cuda is for the gpu image only"
[ -z "$torch_wheels" ] || [ "$kind" = cpu ] || die "--torch-wheels is for the cpu image only"
[ -z "$torch_wheels" ] || [ -d "$torch_wheels" ] || die "--torch-wheels: no folder '$torch_wheels'"

if [ -z "${ENGINE:-}" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=podman; fi
fi
RUNNER=${RUNNER:-$ENGINE}
case "$ENGINE" in docker|podman) ;; *) die "ENGINE must be docker or podman, got '$ENGINE'" ;; esac
[ "$dry_run" = 1 ] || command -v "$ENGINE" >/dev/null || die "ENGINE=$ENGINE is not installed"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)
args=(--build-arg "VERSION=$version" --build-arg "SOURCE_URL=$(git remote get-url origin 2>/dev/null || true)")
[ -z "$torch_index" ] || args+=(--build-arg "TORCH_INDEX=$torch_index")
if [ "$kind" = cpu ]; then
  file=docker/Dockerfile.cpu; tag=${tag:-dali-mixup:cpu}; base_arg=BASE_IMAGE
else
  file=docker/Dockerfile; base_arg=CUDA${cuda}_IMAGE
  [ "$cuda" = 12 ] && tag=${tag:-dali-mixup:gpu} || tag=${tag:-dali-mixup:gpu-cu13}
  args+=(--build-arg "CUDA_MAJOR=$cuda")
fi

if [ "$local_base" = 1 ]; then
  base=localhost/debian-py:bookworm
  if [ "$dry_run" = 0 ] && ! "$ENGINE" image inspect "$base" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || die "--local-base needs debootstrap (apt-get install debootstrap)"
    root=$(mktemp -d)
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin   # apt's lists: 49 MB
    tar -C "$root" -c . | "$ENGINE" import - "$base"
    rm -rf "$root"
  fi
  args+=(--build-arg "$base_arg=$base")
fi
if [ -n "$torch_wheels" ]; then
  [ "$ENGINE" = podman ] || die "--torch-wheels needs ENGINE=podman (docker build cannot mount a folder)"
  args+=(-v "$(cd "$torch_wheels" && pwd):/wheels:ro" --build-arg TORCH_FIND_LINKS=/wheels)
fi
if [ "$ENGINE" = podman ]; then
  args+=(--format docker --isolation chroot --network host)
  [ ! -d /etc/ssl/certs ] || args+=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
fi

echo "+ $ENGINE build -f $file -t $tag ${args[*]} ." >&2
[ "$dry_run" = 0 ] || exit 0
start=$(date +%s)
"$ENGINE" build -f "$file" -t "$tag" "${args[@]}" .
echo "built $tag in $(( $(date +%s) - start )) s" >&2

[ $# -gt 0 ] || exit 0
gpus=()
case "$RUNNER" in
  docker) [ "$kind" = cpu ] || gpus=(--gpus all --ipc=host)
          exec docker run --rm "${gpus[@]}" "$tag" "$@" ;;
  podman) [ "$kind" = cpu ] || gpus=(--device nvidia.com/gpu=all --ipc=host)
          exec podman run --rm "${gpus[@]}" "$tag" "$@" ;;
  buildah) c=$(buildah from "$tag")
           trap 'buildah rm "$c" >/dev/null' EXIT
           certs=(); [ ! -d /etc/ssl/certs ] || certs=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
           # a hostname /etc/hosts resolves (torchrun's rendezvous looks it up)
           buildah run --isolation chroot --network host --hostname localhost "${certs[@]}" "$c" -- "$@" ;;
  *) die "RUNNER must be docker, podman or buildah, got '$RUNNER'" ;;
esac
