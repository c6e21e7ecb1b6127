# Sourced by the demos: prepare the machine, build, and install into a new
# temporary prefix. Sets $prefix (remove it when done) and $bin.
temp_install() {  # temp_install NAME
    bash scripts/setup.sh
    make build PYTHON=.venv/bin/python >/dev/null
    prefix=$(mktemp -d "/tmp/$1.XXXXXX")
    make install DESTDIR="$prefix" >/dev/null
    bin="$prefix/opt/cni/bin"
}
