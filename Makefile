# Build and install the PyInstaller executables and the network config.
#
#   make build                    # dist/calico-py.d/ (with .venv's python: scripts/setup.sh
#                                 # installs PyInstaller there; PYTHON=<python> for another)
#   make install [DESTDIR=<dir>]  # <dir>/opt/cni/bin/calico-py{,-ipam}, <dir>/etc/cni/net.d/,
#                                 # the agent's unit in <dir>/lib/systemd/system/ (not enabled)
#   make uninstall [DESTDIR=<dir>]
#   make image                    # dist/calico-py-image.tar: the node image (docker-archive,
#                                 # for `ctr images import`), offline; scripts/build_image.py
#   make test                     # scripts/test.sh
#   make clean
#   DIST=<dir> BUILD=<dir> put the build and its scratch files elsewhere
#
# The build is one directory, calico-py.d/, installed in the CNI bin dir;
# calico-py and calico-py-ipam are relative symlinks to the executable in it
# (it dispatches on the name it runs under). An existing conflist that differs
# from conf/ is kept, and the new one is put next to it as *.conflist.new,
# which runtimes do not load.

# The project's virtualenv (scripts/setup.sh makes it, with PyInstaller), else python3.
PYTHON      ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
DESTDIR     ?=
CNI_BIN_DIR ?= /opt/cni/bin
CNI_NET_DIR ?= /etc/cni/net.d
SYSTEMD_DIR ?= /lib/systemd/system

NAME     := calico-py
PROGRAMS := calico-py calico-py-ipam
CONFLIST := conf/10-calico-py.conflist
UNITS    := $(wildcard conf/*.service)
EXAMPLES := $(wildcard conf/*.example)
DIST     ?= dist
BUILD    ?= build
APP      := $(DIST)/$(NAME).d
EXE      := $(APP)/$(NAME)
# What /opt/cni/bin/calico-py{,-ipam} point at: forwards to the agent, else
# executes $(EXE) (launcher/launcher.c says why it is C).
LAUNCHER := $(APP)/launcher
IMAGE    := $(DIST)/$(NAME)-image.tar
CC       ?= cc
CFLAGS   ?= -O2 -Wall -Wextra -Werror
SOURCES  := $(shell find cni_calico_py ipam -name '*.py' -not -path '*/__pycache__/*') \
            build.spec setup.cfg

BIN := $(DESTDIR)$(CNI_BIN_DIR)
NET := $(DESTDIR)$(CNI_NET_DIR)
SYSTEMD := $(DESTDIR)$(SYSTEMD_DIR)
ETC := $(DESTDIR)/etc/calico-py

.PHONY: build install uninstall image test clean

build: $(EXE) $(LAUNCHER)

$(EXE): $(SOURCES)
	$(PYTHON) -m PyInstaller --noconfirm --clean --log-level WARN \
		--distpath $(DIST) --workpath $(BUILD)/pyinstaller build.spec
	@touch $@

$(LAUNCHER): launcher/launcher.c $(EXE)
	$(CC) $(CFLAGS) -o $@ launcher/launcher.c

install: $(EXE) $(LAUNCHER)
	install -d $(BIN) $(NET)
	rm -rf $(BIN)/$(NAME).d.new $(BIN)/$(NAME).d.old
	cp -a $(APP) $(BIN)/$(NAME).d.new
	if [ -e $(BIN)/$(NAME).d ]; then mv -T $(BIN)/$(NAME).d $(BIN)/$(NAME).d.old; fi
	mv -T $(BIN)/$(NAME).d.new $(BIN)/$(NAME).d
	rm -rf $(BIN)/$(NAME).d.old
	for prog in $(PROGRAMS); do \
		ln -sfn $(NAME).d/launcher $(BIN)/$$prog.tmp && mv -Tf $(BIN)/$$prog.tmp $(BIN)/$$prog; \
	done
	target=$(NET)/$(notdir $(CONFLIST)); \
	if [ -e $$target ] && ! cmp -s $(CONFLIST) $$target; then \
		install -m 0644 $(CONFLIST) $$target.new; \
		echo "kept $$target; the packaged one is $$target.new"; \
	else \
		install -m 0644 $(CONFLIST) $$target; \
	fi
	for unit in $(UNITS); do install -D -m 0644 $$unit $(SYSTEMD)/$$(basename $$unit); done
	for example in $(EXAMPLES); do install -D -m 0644 $$example $(ETC)/$$(basename $$example); done

uninstall:
	rm -f $(addprefix $(BIN)/,$(PROGRAMS))
	rm -rf $(BIN)/$(NAME).d
	rm -f $(addprefix $(SYSTEMD)/,$(notdir $(UNITS))) $(addprefix $(ETC)/,$(notdir $(EXAMPLES)))
	rm -f $(NET)/$(notdir $(CONFLIST)).new
	if cmp -s $(CONFLIST) $(NET)/$(notdir $(CONFLIST)); then rm -f $(NET)/$(notdir $(CONFLIST)); fi

# Always rewritten: besides the build, it holds the host's bird2, busybox and libraries.
image: $(EXE) $(LAUNCHER)
	$(PYTHON) scripts/build_image.py --dist $(DIST) --out $(IMAGE)

test:
	bash scripts/test.sh

clean:
	rm -rf $(BUILD) $(DIST)
