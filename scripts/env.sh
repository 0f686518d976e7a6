# Where the project keeps what it provisions outside the repository.
# Sourced by the other scripts; every path can be overridden from the environment.
: "${QTRACE_CACHE:=$HOME/.cache/qtrace}"
: "${QTRACE_QEMU_DIR:=$QTRACE_CACHE/qemu-10.0.2}"
: "${QTRACE_PY:=$QTRACE_CACHE/py}"
export QTRACE_CACHE QTRACE_QEMU_DIR QTRACE_PY
