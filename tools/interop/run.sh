#!/bin/bash
# tools/interop/run.sh: deliver mail through the real qmail-remote-go chain
# to real MTAs (Debian's Postfix, Exim and OpenSMTPD), over IPv4 and IPv6, found by MX
# lookup against a real DNS server (unbound), and check what the MTAs stored
# byte for byte. Everything runs in private network namespaces joined by a
# bridge in a namespace of its own: no packet can leave the machine, and the
# only addresses in use are documentation ones (192.0.2.0/24, 2001:db8::/32).
#
# Usage: tools/interop/run.sh [--selftest] [--keep] [--no-tls] [--no-size]
#                             [--no-dane] [--no-sts] [--realexec]
#   --selftest  check the test bed with a stand-in client (dig and a bash
#               /dev/tcp SMTP client) instead of the chain: for when the
#               chain does not build, or to tell a test-bed fault from a
#               chain fault.
#   --keep      keep the temporary directory (MTA logs, mailboxes, reports)
#               and print its path; namespaces and processes are removed
#               all the same.
#   --no-tls    leave out the STARTTLS cases (tlsstrictness 0 and 2
#               against certificates from a throw-away CA, and a Postfix
#               service on port 2525 that offers no STARTTLS), which run
#               by default. Both MTAs offer STARTTLS on port 25 in every
#               run; without trust anchors the chain must ignore it.
#               The smarthost cases (AUTH on Exim's ports 465 and 587),
#               the tlsstrictness matrix (0, 1, 2 against Postfix, Exim
#               and OpenSMTPD) and the client-certificate cases need TLS
#               and are left out with it.
#   --tls       accepted for compatibility (the TLS cases are the default).
#   --no-dane   leave out the DANE cases (RFC 7672), which run by default
#               with the TLS cases: a zone dane.test signed at test time
#               (ldnsutils) and served by NSD, unbound validating it with
#               a trust anchor for that zone only, TLSA records computed
#               from the MTAs' certificates, and the chain at
#               control/tlspolicy levels dane and dane-only. --no-tls
#               leaves them out too. Without the signing tools (after
#               trying to install them) they are skipped with a note.
#   --no-sts    leave out the MTA-STS and TLS report cases (RFC 8461,
#               RFC 8460), which run by default with the TLS cases: policy
#               servers (openssl s_server on port 443, certificates from
#               the test CA) for domains at enforce and testing, a policy
#               server that answers 404 and one whose certificate does not
#               name it, the chain's TLS report log checked line by line,
#               and qmail-remote-tlsrpt's report mailed through the chain
#               to Postfix and read back. --no-tls leaves them out too.
#   --realexec  run the chain with QMAILREMOTE_REALEXEC=1: every stage a
#               process of its own, as before the chain ran in one
#               process (make check-interop runs both ways).
#   --no-size   leave out the SIZE case (a Postfix service whose SIZE
#               limit is smaller than the message must get no transaction:
#               D, #5.3.4, and no MAIL or DATA in its log), for a chain
#               that does not send SIZE yet. (--size, which added it when
#               it was opt-in, is still accepted.)
#
# Exit status: 0 when every case passed (or "SKIP: ..." was printed),
# 1 when a case failed, 2 on a set-up failure.
#
# See README.md beside this file and doc/interop.md.
set -eu

SELFTEST=0
KEEP=0
TLS=1
SIZE=1
REALEXEC=0
DANE=1
STS=1
for a in "$@"; do
	case $a in
	--no-sts) STS=0 ;;
	--sts) STS=1 ;;
	--no-dane) DANE=0 ;;
	--dane) DANE=1 ;;
	--realexec) REALEXEC=1 ;;
	--size) SIZE=1 ;;
	--no-size) SIZE=0 ;;
	--selftest) SELFTEST=1 ;;
	--keep) KEEP=1 ;;
	--tls) TLS=1 ;;
	--no-tls) TLS=0 ;;
	-h | --help)
		sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "run.sh: unknown argument: $a (try --help)" >&2
		exit 2
		;;
	esac
done
# DANE and MTA-STS need STARTTLS.
[ "$TLS" = 1 ] || DANE=0 STS=0

if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root (network namespaces, MTAs listening on port 25)"
	exit 0
fi

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
export PATH
LC_ALL=C
export LC_ALL

# Every name this run creates carries this prefix and our pid, so two runs
# (or a run and a stale leftover) never collide and teardown removes only
# what this run made.
P=qrint$$
NS_BR=$P-br
NS_CL=$P-client
NS_DNS=$P-dns
NS_PF=$P-postfix
NS_EX=$P-exim
NS_OS=$P-smtpd
NS_AUTH=$P-auth
NS_STS=$P-sts
ALL_NS="$NS_CL $NS_DNS $NS_PF $NS_EX $NS_OS $NS_AUTH $NS_STS $NS_BR"

# Addresses: documentation ranges only (RFC 5737, RFC 3849).
CL4=192.0.2.10 CL6=2001:db8::10
# The client's second pair, for control/outgoingip: connections come from
# the first pair unless the chain binds to these.
CL4B=192.0.2.11 CL6B=2001:db8::11
DNS4=192.0.2.53 DNS6=2001:db8::53
PF4=192.0.2.25 PF6=2001:db8::25
EX4=192.0.2.26 EX6=2001:db8::26
OS4=192.0.2.27 OS6=2001:db8::27
# A second pair of OpenSMTPD's addresses, where its firewall (nft) drops
# every packet to port 25: the blackholing MX of the tcpto cases.
BH4=192.0.2.28 BH6=2001:db8::28
# How tcpto and tcpto6 store them (4 and 16 bytes, as od -tu1 prints them).
BH4_BYTES="192 0 2 28"
BH6_BYTES="32 1 13 184 0 0 0 0 0 0 0 0 0 0 0 40"
# The DANE cases: NSD, authoritative for the signed zone dane.test, and a
# second NSD on the same host that serves no zone at all (it answers
# REFUSED): the name server of a delegation whose lookups fail.
AUTH4=192.0.2.54 AUTH6=2001:db8::54
REF4=192.0.2.55 REF6=2001:db8::55
# The MTA-STS cases: the policy servers (openssl s_server on port 443),
# one per policy: the enforce policy on STS4 and STS6, the testing one on
# STST4, and on STSN4 a server that answers 404.
STS4=192.0.2.80 STS6=2001:db8::80
STST4=192.0.2.81 STSN4=192.0.2.82

T=
PIDS=
say() { printf '%s\n' "$*"; }
die() {
	printf 'run.sh: %s\n' "$*" >&2
	exit 2
}

teardown() {
	rc=$?
	set +e
	trap - EXIT INT TERM HUP
	# Daemons first, politely, then anything still in our namespaces.
	for pid in $PIDS; do kill -TERM "$pid" 2>/dev/null; done
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		alive=
		for pid in $PIDS; do kill -0 "$pid" 2>/dev/null && alive=1; done
		[ -z "$alive" ] && break
		sleep 0.3
	done
	for ns in $ALL_NS; do
		if ip netns list 2>/dev/null | grep -q "^$ns\\b"; then
			for pid in $(ip netns pids "$ns" 2>/dev/null); do
				kill -KILL "$pid" 2>/dev/null
			done
		fi
	done
	for pid in $PIDS; do wait "$pid" 2>/dev/null; done
	for ns in $ALL_NS; do
		ip netns del "$ns" 2>/dev/null
		rm -rf "/etc/netns/$ns"
	done
	rmdir /etc/netns 2>/dev/null
	if [ -n "$T" ] && [ -d "$T" ]; then
		if [ "$KEEP" = 1 ]; then
			say "kept: $T"
		else
			rm -rf "$T"
		fi
	fi
	exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

T=$(mktemp -d /tmp/qrint.XXXXXX)
# The MTAs deliver as nobody and Postfix runs as postfix: they must be able
# to walk down to their directories.
chmod 0755 "$T"

# ---------------------------------------------------------------------------
# 1. What we need: iproute2, unbound and nftables from Debian, installed;
# Postfix, Exim and OpenSMTPD fetched and unpacked into $T/root, never
# installed (they conflict with each other and with whatever MTA the host
# has).

apt_ready=0
# apt_try PACKAGE...: install them, or return 1 (apt_install: or die).
apt_try() {
	if [ "$apt_ready" = 0 ]; then
		apt-get update -q >"$T/apt-update.log" 2>&1 || return 1
		apt_ready=1
	fi
	# A package's postinst must not start a system-wide daemon (unbound's
	# would fetch the DNSSEC root key from the Internet).
	made_policy=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	say "installing: $*"
	apt_rc=0
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
		>"$T/apt-install.log" 2>&1 || apt_rc=1
	[ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
	return "$apt_rc"
}
apt_install() {
	apt_try "$@" || die "apt-get install $* failed: see $T/apt-update.log and $T/apt-install.log"
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

need=
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v unbound >/dev/null 2>&1 || need="$need unbound"
command -v setpriv >/dev/null 2>&1 || need="$need util-linux"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
command -v nft >/dev/null 2>&1 || need="$need nftables"
if [ "$SELFTEST" = 1 ]; then command -v dig >/dev/null 2>&1 || need="$need bind9-dnsutils"; fi
# shellcheck disable=SC2086
[ -n "$need" ] && apt_install $need
# The DANE cases sign their zone with ldnsutils (ldns-keygen,
# ldns-signzone; drill asks the validator what the chain will be told).
# Where it cannot be installed they are skipped, with a note.
DANE_SKIP=
dane_tools() { command -v ldns-keygen && command -v ldns-signzone && command -v drill; } >/dev/null 2>&1
if [ "$DANE" = 1 ] && ! dane_tools; then
	apt_try ldnsutils || true
	if ! dane_tools; then
		DANE_SKIP="ldnsutils (ldns-keygen, ldns-signzone, drill) is not installable here"
		say "SKIP (the DANE cases): $DANE_SKIP: see $T/apt-install.log"
		DANE=0
	fi
fi

# Network namespaces must work here (not in every container they do).
ip netns add "$NS_BR" 2>"$T/netns.err" || {
	echo "SKIP: cannot create network namespaces: $(cat "$T/netns.err")"
	exit 0
}

R=$T/root
MTA_DEBS="postfix exim4-daemon-light exim4-base exim4-config opensmtpd"
mkdir -p "$T/debs" "$R"
# shellcheck disable=SC2086
(cd "$T/debs" && apt-get download -q $MTA_DEBS \
	>"$T/apt-download.log" 2>&1) || {
	apt-get update -q >"$T/apt-update.log" 2>&1 && apt_ready=1
	# shellcheck disable=SC2086
	(cd "$T/debs" && apt-get download -q $MTA_DEBS \
		>"$T/apt-download.log" 2>&1) || die "apt-get download failed: see $T/apt-download.log"
}
# NSD, the DANE cases' authoritative server: fetched and unpacked like the
# MTAs, never installed (its postinst would start a system-wide daemon).
if [ "$DANE" = 1 ] && ! (cd "$T/debs" && apt-get download -q nsd >>"$T/apt-download.log" 2>&1); then
	DANE_SKIP="apt-get download nsd failed"
	say "SKIP (the DANE cases): $DANE_SKIP: see $T/apt-download.log"
	DANE=0
fi
for deb in "$T"/debs/*.deb; do dpkg-deb -x "$deb" "$R"; done

# Libraries the MTAs link against: these packages don't conflict with
# anything, so install the missing ones from the packages' Depends.
libs=
for deb in "$T"/debs/*.deb; do
	for dep in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' | grep '^lib'); do
		installed "$dep" || libs="$libs $dep"
	done
done
# shellcheck disable=SC2086
[ -n "$libs" ] && apt_install $libs
PFLIB=$R/usr/lib/postfix
for bin in "$R/usr/sbin/exim4" "$PFLIB/sbin/master" "$PFLIB/sbin/smtpd" "$PFLIB/sbin/virtual" \
	"$R/usr/sbin/smtpd" "$R/usr/libexec/opensmtpd/mail.maildir" $([ "$DANE" = 1 ] && echo "$R/usr/sbin/nsd"); do
	if LD_LIBRARY_PATH=$PFLIB ldd "$bin" | grep -q 'not found'; then
		die "$bin lacks libraries: $(LD_LIBRARY_PATH=$PFLIB ldd "$bin" | grep 'not found' | tr '\n' ' ')"
	fi
done

# The Debian builds look these accounts up by name at run time. Debian's
# OpenSMTPD runs as opensmtpd and its queue as opensmtpq (upstream calls
# them _smtpd and _smtpq).
made_users=
if ! getent group postdrop >/dev/null; then groupadd --system postdrop; made_users="$made_users group:postdrop"; fi
for u in postfix Debian-exim opensmtpd opensmtpq; do
	if ! getent passwd "$u" >/dev/null; then
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin "$u"
		made_users="$made_users user:$u"
	fi
done
[ -n "$made_users" ] && say "note: created system accounts the MTAs need (left in place):$made_users"

# ---------------------------------------------------------------------------
# 2. The chain (or nothing, in self-test mode).

PROGS="qmail-remote qmail-newsmtproutes qmail-remote-routes qmail-remote-resolve qmail-remote-connect qmail-remote-io"
[ "$TLS" = 0 ] || PROGS="$PROGS qmail-remote-tlsio"
[ "$STS" = 0 ] || PROGS="$PROGS qmail-remote-tlsrpt"
BIN=$T/bin
mkdir -p "$BIN"
if [ "$SELFTEST" = 0 ]; then
	command -v go >/dev/null 2>&1 || die "go not found (PATH=$PATH)"
	# One binary, every program a hard link to it, as make install
	# leaves them.
	(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -o "$BIN/qmail-remote" ./src/multicall) \
		>"$T/build.log" 2>&1 || die "go build ./src/multicall failed: $(cat "$T/build.log")"
	for p in $PROGS; do
		[ "$p" = qmail-remote ] || ln -f "$BIN/qmail-remote" "$BIN/$p" || die "ln $BIN/$p failed"
	done
	say "built: $PROGS (one binary$([ "$REALEXEC" = 1 ] && echo ', QMAILREMOTE_REALEXEC=1'))"
fi

# ---------------------------------------------------------------------------
# 3. The network: one bridge in its own namespace, one veth per host.

ip -n "$NS_BR" link set lo up
ip -n "$NS_BR" link add br0 type bridge mcast_snooping 0
ip -n "$NS_BR" link set br0 up
host_ns() { # name v4 v6
	ip netns add "$1"
	ip -n "$NS_BR" link add "v$4" type veth peer name eth0 netns "$1"
	ip -n "$NS_BR" link set "v$4" master br0 up
	ip -n "$1" link set lo up
	ip -n "$1" addr add "$2/24" dev eth0
	# nodad: usable at once, no 1-2 s wait for duplicate address detection.
	ip -n "$1" addr add "$3/64" dev eth0 nodad
	ip -n "$1" link set eth0 up
	# Each host's resolver is our DNS server (ip netns exec bind-mounts
	# /etc/netns/NAME/resolv.conf over /etc/resolv.conf).
	mkdir -p "/etc/netns/$1"
	printf 'nameserver %s\noptions timeout:2 attempts:2\n' "$DNS4" >"/etc/netns/$1/resolv.conf"
	printf '127.0.0.1 localhost\n::1 localhost\n' >"/etc/netns/$1/hosts"
}
host_ns "$NS_CL" "$CL4" "$CL6" cl
ip -n "$NS_CL" addr add "$CL4B/24" dev eth0
# Deprecated (preferred_lft 0): the kernel never picks it as a source by
# itself, so every other case still comes from CL6; a bind to it works.
ip -n "$NS_CL" addr add "$CL6B/64" dev eth0 nodad preferred_lft 0
host_ns "$NS_DNS" "$DNS4" "$DNS6" dns
host_ns "$NS_PF" "$PF4" "$PF6" pf
host_ns "$NS_EX" "$EX4" "$EX6" ex
host_ns "$NS_OS" "$OS4" "$OS6" os
ip -n "$NS_OS" addr add "$BH4/24" dev eth0
ip -n "$NS_OS" addr add "$BH6/64" dev eth0 nodad
if [ "$DANE" = 1 ]; then
	host_ns "$NS_AUTH" "$AUTH4" "$AUTH6" auth
	ip -n "$NS_AUTH" addr add "$REF4/24" dev eth0
	ip -n "$NS_AUTH" addr add "$REF6/64" dev eth0 nodad
fi
if [ "$STS" = 1 ]; then
	host_ns "$NS_STS" "$STS4" "$STS6" sts
	ip -n "$NS_STS" addr add "$STST4/24" dev eth0
	ip -n "$NS_STS" addr add "$STSN4/24" dev eth0
fi
# The blackhole: OpenSMTPD listens on BH4 and BH6 too, but its host's
# firewall drops every packet to their port 25 (counted, so a case can tell
# whether the client tried). Without the rule the connection would be
# accepted; with it the client's SYNs go unanswered until timeoutconnect.
ip netns exec "$NS_OS" nft -f - <<EOF || die "nft failed in $NS_OS (nf_tables missing?)"
table inet qrint {
	chain input {
		type filter hook input priority 0; policy accept;
		ip daddr $BH4 tcp dport 25 counter drop
		ip6 daddr $BH6 tcp dport 25 counter drop
	}
}
EOF
# dropped ADDR: how many packets to ADDR port 25 the firewall dropped.
dropped() {
	ip netns exec "$NS_OS" nft list chain inet qrint input |
		sed -n "s/.* daddr $1 tcp dport 25 counter packets \([0-9]*\) .*/\1/p"
}

in_ns() { # ns command...
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}
start() { # ns logfile command... : a daemon in the foreground, remembered
	local ns=$1 log=$2
	shift 2
	ip netns exec "$ns" "$@" </dev/null >"$log" 2>&1 &
	PIDS="$PIDS $!"
}

# ---------------------------------------------------------------------------
# TLS material: a throw-away CA and one certificate per MTA naming every MX
# name that points at it (and its addresses). badname.mx.test points at Exim
# but is in no certificate: tlsstrictness 2 must refuse it. Exim's also
# names ta-ex.mx.dane.test, the MX host of the DANE-TA case (a DANE-TA
# record needs the name checked; tabad-ex.mx.dane.test, not in it, must be
# refused), and Exim sends the CA after it (mx-exim.test.chain.pem): a
# DANE-TA record matches a certificate in the chain the server sends.

TD=$T/tls
mkdir -p "$TD"
tls_cert() { # name sans [usage [key]]
	openssl req -new -newkey "${4:-ec}" -pkeyopt "${5:-ec_paramgen_curve:P-256}" -nodes \
		-keyout "$TD/$1.key" -out "$TD/$1.csr" -subj "/CN=$1" >>"$TD/openssl.log" 2>&1
	printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$2" "${3:-serverAuth}" >"$TD/$1.ext"
	openssl x509 -req -in "$TD/$1.csr" -CA "$TD/ca.pem" -CAkey "$TD/ca.key" \
		-CAcreateserial -days 2 -extfile "$TD/$1.ext" -out "$TD/$1.pem" >>"$TD/openssl.log" 2>&1
}
{
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-keyout "$TD/ca.key" -out "$TD/ca.pem" -subj "/CN=qmail-remote-go interop CA" \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
		>>"$TD/openssl.log" 2>&1 &&
		tls_cert mx-postfix.test "DNS:mx-postfix.test,DNS:pf4.mx.test,DNS:pf6.mx.test,IP:$PF4,IP:$PF6" &&
		tls_cert mx-exim.test "DNS:mx-exim.test,DNS:ex4.mx.test,DNS:ex6.mx.test,DNS:ta-ex.mx.dane.test,IP:$EX4,IP:$EX6" &&
		cat "$TD/mx-exim.test.pem" "$TD/ca.pem" >"$TD/mx-exim.test.chain.pem" &&
		tls_cert mx-smtpd.test "DNS:mx-smtpd.test,DNS:os4.mx.test,DNS:os6.mx.test,IP:$OS4,IP:$OS6" \
			serverAuth rsa rsa_keygen_bits:2048 &&
		tls_cert client.test "DNS:client.test" clientAuth
} || die "openssl failed: $(cat "$TD/openssl.log")"
chown Debian-exim "$TD/mx-exim.test.key"
# The client certificate's key: qmail-remote runs as nobody.
chown nobody "$TD/client.test.key"
# The MTA-STS policy servers' certificate (6c): mta-sts.DOMAIN of every
# policy domain but sts-webpki.test, whose policy server (the enforce one)
# therefore fails verification.
STS_DOMAINS="sts-enforce.test sts-nomx.test sts-badcert.test sts-next.test sts-testing.test sts-fetchfail.test"
if [ "$STS" = 1 ]; then
	tls_cert mta-sts.test "$(for d in $STS_DOMAINS; do printf 'DNS:mta-sts.%s,' "$d"; done | sed 's/,$//')" ||
		die "openssl failed: $(cat "$TD/openssl.log")"
fi

# ---------------------------------------------------------------------------
# 4. DNS: unbound answering from local data only. "." is a static local zone,
# so unbound never recurses: a name we don't list is NXDOMAIN, a listed name
# without the asked type is NODATA (the implicit-MX case). The one
# exception, for the DANE cases: dane.test, which it resolves from NSD
# and validates (4a).

# 4a. DANE (not with --no-dane or --no-tls): a zone dane.test signed here
# and now with a throw-away key (ldns-keygen, ldns-signzone; ECDSA P-256,
# NSEC, signatures valid from an hour ago for two days), served by NSD on
# $AUTH4/$AUTH6. unbound (below) validates it with that key's DS as its
# only trust anchor and reaches it through a stub zone; everything else it
# still answers from local data. The TLSA records are computed from the
# certificates above: SHA-256 of the SPKI (x 1 1), SHA-512 of the whole
# certificate (3 0 2), the CA's SPKI (2 1 1). What each name is for:
#   ee-pf, ee302-pf     Postfix, DANE-EE 3 1 1 (IPv4) and 3 0 2 (IPv6)
#   roll-pf             Postfix, a stale 3 1 1 and the right one (rollover)
#   bad-pf              Postfix, a stale 3 1 1 only: must be refused
#   bogus-pf            Postfix, its TLSA RRset changed after signing (to
#                       the right digest): bogus, SERVFAIL
#   lame-pf             Postfix; _tcp.lame-pf.mx delegated (insecurely) to a
#                       server that answers REFUSED: the TLSA lookup fails
#   ee-ex, ta-ex        Exim, DANE-EE 3 1 1 (IPv6) and DANE-TA 2 1 1 (IPv4)
#   tabad-ex            Exim, DANE-TA 2 1 1, a host name not in its certificate
#   bad-ex              Exim, 3 1 1 of the CA, which Exim sends: DANE-EE
#                       matches the leaf only, so no match
#   nodata-ex           Exim, no TLSA (secure NODATA: _25._tcp has a TXT)
#   next                MX 10 lame-pf.mx (TLSA lookup fails), MX 20 ee-ex.mx
#   ee-os               OpenSMTPD, DANE-EE 3 1 1 (its TLS is broken, see 6b)
#   nodata-os           OpenSMTPD, no TLSA (secure NXDOMAIN)
#   insecure            a child zone, unsigned, delegated without DS: MX
#                       and a (stale) TLSA, both insecure, to Postfix
#   badkey              a child zone signed with a key its DS does not
#                       name: every answer from it is bogus (SERVFAIL)
# Each domain is MX 10 NAME.mx.dane.test; the MX hosts have one address.
DZ=$T/auth
if [ "$DANE" = 1 ]; then
	mkdir -p "$DZ" "$T/refused"
	spki256() { openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1; }
	cert512() { openssl x509 -in "$1" -outform DER | openssl dgst -sha512 -r | cut -d' ' -f1; }
	keygen() { (cd "$DZ" && ldns-keygen -a ECDSAP256SHA256 -k "$1"); }
	signzone() { # zone-file key: writes zone-file.signed
		(cd "$DZ" && ldns-signzone -i "$(date -u -d '1 hour ago' +%Y%m%d%H%M%S)" \
			-e "$(date -u -d '2 days' +%Y%m%d%H%M%S)" "$1" "$2")
	}
	zone_head() { # origin
		# shellcheck disable=SC2016 # zone file directives, not expansions
		printf '$ORIGIN %s.\n$TTL 300\n' "$1"
		printf '@ SOA ns.dane.test. hostmaster.dane.test. 1 3600 600 86400 300\n@ NS ns.dane.test.\n'
	}
	{
		PF_311=$(spki256 "$TD/mx-postfix.test.pem") && PF_302=$(cert512 "$TD/mx-postfix.test.pem") &&
			EX_311=$(spki256 "$TD/mx-exim.test.pem") && OS_311=$(spki256 "$TD/mx-smtpd.test.pem") &&
			CA_311=$(spki256 "$TD/ca.pem") &&
			STALE_311=$(openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 |
				openssl pkey -pubout -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1) &&
			[ ${#PF_311} = 64 ] && [ ${#PF_302} = 128 ] && [ ${#EX_311} = 64 ] && [ ${#OS_311} = 64 ] &&
			[ ${#CA_311} = 64 ] && [ ${#STALE_311} = 64 ]
	} 2>>"$TD/openssl.log" || die "computing the TLSA digests failed: $(tail -n 5 "$TD/openssl.log")"
	{
		DANE_KEY=$(keygen dane.test) &&
			BADKEY_DS=$(keygen badkey.dane.test) &&
			BADKEY_SIGNER=$(keygen badkey.dane.test)
	} >>"$DZ/sign.log" 2>&1 || die "ldns-keygen failed: $(cat "$DZ/sign.log")"
	{
		zone_head insecure.dane.test
		printf '@ MX 10 mx\nmx A %s\n_25._tcp.mx TLSA 3 1 1 %s\n' "$PF4" "$STALE_311"
	} >"$DZ/insecure.dane.test"
	{
		zone_head badkey.dane.test
		printf '@ MX 10 mx\nmx A %s\n_25._tcp.mx TLSA 3 1 1 %s\n' "$PF4" "$PF_311"
	} >"$DZ/badkey.dane.test"
	{
		zone_head dane.test
		cat <<EOF
ns A $AUTH4
ns AAAA $AUTH6
ns-refused A $REF4
ns-refused AAAA $REF6
insecure NS ns
badkey NS ns
badkey DS $(awk '{ print $(NF - 3), $(NF - 2), $(NF - 1), $NF }' "$DZ/$BADKEY_DS.ds")
ee-pf MX 10 ee-pf.mx
ee-pf.mx A $PF4
_25._tcp.ee-pf.mx TLSA 3 1 1 $PF_311
ee302-pf MX 10 ee302-pf.mx
ee302-pf.mx AAAA $PF6
_25._tcp.ee302-pf.mx TLSA 3 0 2 $PF_302
roll-pf MX 10 roll-pf.mx
roll-pf.mx A $PF4
_25._tcp.roll-pf.mx TLSA 3 1 1 $STALE_311
_25._tcp.roll-pf.mx TLSA 3 1 1 $PF_311
bad-pf MX 10 bad-pf.mx
bad-pf.mx A $PF4
_25._tcp.bad-pf.mx TLSA 3 1 1 $STALE_311
bogus-pf MX 10 bogus-pf.mx
bogus-pf.mx A $PF4
_25._tcp.bogus-pf.mx TLSA 3 1 1 $STALE_311
lame-pf MX 10 lame-pf.mx
lame-pf.mx A $PF4
_tcp.lame-pf.mx NS ns-refused
ee-ex MX 10 ee-ex.mx
ee-ex.mx AAAA $EX6
_25._tcp.ee-ex.mx TLSA 3 1 1 $EX_311
ta-ex MX 10 ta-ex.mx
ta-ex.mx A $EX4
_25._tcp.ta-ex.mx TLSA 2 1 1 $CA_311
tabad-ex MX 10 tabad-ex.mx
tabad-ex.mx A $EX4
_25._tcp.tabad-ex.mx TLSA 2 1 1 $CA_311
bad-ex MX 10 bad-ex.mx
bad-ex.mx AAAA $EX6
_25._tcp.bad-ex.mx TLSA 3 1 1 $CA_311
nodata-ex MX 10 nodata-ex.mx
nodata-ex.mx A $EX4
_25._tcp.nodata-ex.mx TXT "no TLSA here"
next MX 10 lame-pf.mx
next MX 20 ee-ex.mx
ee-os MX 10 ee-os.mx
ee-os.mx A $OS4
_25._tcp.ee-os.mx TLSA 3 1 1 $OS_311
nodata-os MX 10 nodata-os.mx
nodata-os.mx AAAA $OS6
EOF
	} >"$DZ/dane.test"
	{ signzone badkey.dane.test "$BADKEY_SIGNER" && signzone dane.test "$DANE_KEY"; } >>"$DZ/sign.log" 2>&1 ||
		die "ldns-signzone failed: $(cat "$DZ/sign.log")"
	# The tampering: bogus-pf's TLSA record now holds Postfix's digest, which
	# would match, under a signature made for the stale one.
	sed -i "/^_25\\._tcp\\.bogus-pf\\.mx\\.dane\\.test\\.[[:space:]].*TLSA/s/$STALE_311/$PF_311/" "$DZ/dane.test.signed"
	grep -Eq "^_25\\._tcp\\.bogus-pf\\.mx\\.dane\\.test\\.[[:space:]].*TLSA.*$PF_311" "$DZ/dane.test.signed" ||
		die "could not change bogus-pf's TLSA record in $DZ/dane.test.signed"
	cp "$DZ/$DANE_KEY.ds" "$DZ/trust-anchor.ds"
	for z in dane.test insecure.dane.test badkey.dane.test; do
		f=$z.signed
		[ "$z" = insecure.dane.test ] && f=$z
		"$R/usr/sbin/nsd-checkzone" "$z" "$DZ/$f" >>"$DZ/sign.log" 2>&1 ||
			die "nsd-checkzone $z failed: $(tail -n 5 "$DZ/sign.log")"
	done
	# nsd_conf DIR ADDRESSES ZONE-FILES: NSD in the foreground, as root, no
	# chroot, no database, everything under DIR.
	nsd_conf() {
		local z a
		printf 'server:\n'
		for a in $2; do printf '\tip-address: %s\n' "$a"; done
		cat <<EOF
	port: 53
	username: ""
	chroot: ""
	zonesdir: "$1"
	database: ""
	zonelistfile: "$1/zone.list"
	xfrdfile: "$1/xfrd.state"
	xfrdir: "$1"
	pidfile: "$1/nsd.pid"
	logfile: "$1/nsd.log"
	server-count: 1
	verbosity: 1
	hide-version: yes
remote-control:
	control-enable: no
EOF
		for z in $3; do
			printf 'zone:\n\tname: "%s"\n\tzonefile: "%s"\n' "${z%.signed}" "$z"
		done
	}
	nsd_conf "$DZ" "$AUTH4 $AUTH6" "dane.test.signed insecure.dane.test badkey.dane.test.signed" >"$DZ/nsd.conf"
	# The refusing server: no zone at all, every query REFUSED.
	nsd_conf "$T/refused" "$REF4 $REF6" "" >"$T/refused/nsd.conf"
	for d in "$DZ" "$T/refused"; do
		"$R/usr/sbin/nsd-checkconf" "$d/nsd.conf" >"$d/checkconf.log" 2>&1 ||
			die "NSD config rejected: $(cat "$d/checkconf.log")"
		start "$NS_AUTH" "$d/stderr.log" "$R/usr/sbin/nsd" -d -c "$d/nsd.conf"
	done
fi

mkdir -p "$T/dns"
{
	cat <<EOF
server:
	directory: "$T/dns"
	chroot: ""
	username: ""
	pidfile: "$T/dns/unbound.pid"
	use-syslog: no
	logfile: "$T/dns/unbound.log"
	verbosity: 1
	log-queries: yes
	do-daemonize: no
	interface: $DNS4
	interface: $DNS6
	port: 53
	do-ip4: yes
	do-ip6: yes
	access-control: 192.0.2.0/24 allow
	access-control: 2001:db8::/32 allow
	module-config: "$([ "$DANE" = 1 ] && echo 'validator iterator' || echo iterator)"
	local-zone: "." static
	local-zone: "test." static
	local-zone: "2.0.192.in-addr.arpa." static
	local-zone: "8.b.d.0.1.0.0.2.ip6.arpa." static
EOF
	while read -r rr; do
		[ -n "$rr" ] && printf '\tlocal-data: "%s"\n' "$rr"
	done <<EOF
client.test. 300 IN A $CL4
client.test. 300 IN AAAA $CL6
mx-postfix.test. 300 IN A $PF4
mx-postfix.test. 300 IN AAAA $PF6
mx-exim.test. 300 IN A $EX4
mx-exim.test. 300 IN AAAA $EX6
pf4.mx.test. 300 IN A $PF4
pf6.mx.test. 300 IN AAAA $PF6
ex4.mx.test. 300 IN A $EX4
ex6.mx.test. 300 IN AAAA $EX6
closed.mx.test. 300 IN A $DNS4
badname.mx.test. 300 IN A $EX4
dual.mx.test. 300 IN AAAA $DNS6
dual.mx.test. 300 IN A $PF4
v6fail.test. 300 IN MX 10 dual.mx.test.
badcert.test. 300 IN MX 10 badname.mx.test.
v4.test. 300 IN MX 10 pf4.mx.test.
pf6.test. 300 IN MX 10 pf6.mx.test.
ex4.test. 300 IN MX 10 ex4.mx.test.
v6.test. 300 IN MX 10 ex6.mx.test.
both.test. 300 IN MX 10 mx-exim.test.
both.test. 300 IN MX 20 mx-postfix.test.
fallback.test. 300 IN MX 10 closed.mx.test.
fallback.test. 300 IN MX 20 pf4.mx.test.
implicit.test. 300 IN A $PF4
nullmx.test. 300 IN MX 0 .
sroute.test. 300 IN MX 10 pf4.mx.test.
mx-smtpd.test. 300 IN A $OS4
mx-smtpd.test. 300 IN AAAA $OS6
os4.mx.test. 300 IN A $OS4
os6.mx.test. 300 IN AAAA $OS6
os4.test. 300 IN MX 10 os4.mx.test.
os6.test. 300 IN MX 10 os6.mx.test.
bh4.mx.test. 300 IN A $BH4
bh6.mx.test. 300 IN AAAA $BH6
bh4.test. 300 IN MX 10 bh4.mx.test.
bh4.test. 300 IN MX 20 pf4.mx.test.
bh6.test. 300 IN MX 10 bh6.mx.test.
bh6.test. 300 IN MX 20 pf6.mx.test.
EOF
	for pair in "$CL4 client.test" "$PF4 mx-postfix.test" "$EX4 mx-exim.test" "$OS4 mx-smtpd.test" \
		"$CL6 client.test" "$PF6 mx-postfix.test" "$EX6 mx-exim.test" "$OS6 mx-smtpd.test"; do
		printf '\tlocal-data-ptr: "%s"\n' "$pair"
	done
	if [ "$STS" = 1 ]; then
		# The MTA-STS cases (6c): each domain's MX, its policy server
		# (mta-sts.DOMAIN) and its _mta-sts TXT record; sts-next.test
		# also publishes a TLSRPT record, its reports to a Postfix
		# mailbox.
		while read -r rr; do
			[ -n "$rr" ] && printf '\tlocal-data: "%s"\n' "$rr"
		done <<EOF
sts-enforce.test. 300 IN MX 10 pf4.mx.test.
sts-nomx.test. 300 IN MX 10 pf6.mx.test.
sts-badcert.test. 300 IN MX 10 badname.mx.test.
sts-next.test. 300 IN MX 10 badname.mx.test.
sts-next.test. 300 IN MX 20 pf4.mx.test.
sts-testing.test. 300 IN MX 10 badname.mx.test.
sts-fetchfail.test. 300 IN MX 10 pf4.mx.test.
sts-webpki.test. 300 IN MX 10 pf4.mx.test.
mta-sts.sts-enforce.test. 300 IN A $STS4
mta-sts.sts-enforce.test. 300 IN AAAA $STS6
mta-sts.sts-nomx.test. 300 IN A $STS4
mta-sts.sts-badcert.test. 300 IN A $STS4
mta-sts.sts-next.test. 300 IN A $STS4
mta-sts.sts-next.test. 300 IN AAAA $STS6
mta-sts.sts-testing.test. 300 IN A $STST4
mta-sts.sts-fetchfail.test. 300 IN A $STSN4
mta-sts.sts-webpki.test. 300 IN A $STS4
EOF
		# TXT data holds double quotes: single quotes around it.
		for d in $STS_DOMAINS sts-webpki.test; do
			printf "\tlocal-data: '_mta-sts.%s. 300 IN TXT \"v=STSv1; id=20261125T1\"'\n" "$d"
		done
		printf "\tlocal-data: '_smtp._tls.sts-next.test. 300 IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@v4.test\"'\n"
	fi
	if [ "$DANE" = 1 ]; then
		# A transparent local zone under the static ones: names in it
		# that we don't list (all of them) are resolved, through the
		# stub zone, from NSD. Why an answer was bogus goes to the log.
		cat <<EOF
	trust-anchor-file: "$DZ/trust-anchor.ds"
	val-log-level: 2
	local-zone: "dane.test." transparent
stub-zone:
	name: "dane.test."
	stub-addr: $AUTH4
	stub-addr: $AUTH6
EOF
	fi
	printf 'remote-control:\n\tcontrol-enable: no\n'
} >"$T/dns/unbound.conf"
unbound-checkconf "$T/dns/unbound.conf" >"$T/dns/checkconf.log" 2>&1 ||
	die "unbound config rejected: $(cat "$T/dns/checkconf.log")"
start "$NS_DNS" "$T/dns/stderr.log" unbound -d -c "$T/dns/unbound.conf"

# ---------------------------------------------------------------------------
# 5. Postfix: our own config directory, no chroot, virtual mailboxes
# (Maildir, one per address) under $T/postfix/mail, delivered as nobody.
# Unknown addresses are refused at RCPT time (virtual_mailbox_maps).
# Nothing can go out: every non-local transport is "error".

PF_DOMAINS="v4.test pf6.test both.test fallback.test implicit.test v6fail.test notls.test size.test bh4.test bh6.test ccert.test litport.test sroute.test"
PF_BOXES="small@v4.test big@v4.test small@pf6.test small@both.test small@fallback.test
small@implicit.test small@v6fail.test m1@v4.test m2@v4.test bounce@v4.test tls2@v4.test tls0@pf6.test
tls2@notls.test tls0@notls.test small@size.test tls1@v4.test ccert@ccert.test noccert@ccert.test
small@litport.test bh1@bh4.test bh2@bh4.test bh3@bh4.test bh1@bh6.test bh2@bh6.test bh3@bh6.test
src4@v4.test src6@pf6.test sr2@sroute.test"
EX_DOMAINS="v6.test ex4.test both.test badcert.test sroute.test"
EX_BOXES="small big m1 m2 dns6 tls2 tls1 tls0 relay huge lit ipme sr1 srb"
# OpenSMTPD: its own domains (MX over IPv4 and IPv6) and the two reached
# through smtproutes by address literal.
OS_DOMAINS="os4.test os6.test lit4.test lit6.test"
OS_BOXES="small@os4.test small@os6.test big@os4.test big@os6.test tls0@os4.test tls1@os6.test
tls2@os4.test tls2@os6.test small@lit4.test small@lit6.test"
# Exim is also the authenticated smarthost (ports 465 and 587): it is the
# final destination of these domains, but takes mail for them only from a
# client that authenticated (AUTH is offered only under TLS), and takes
# nothing at all on 465/587 without AUTH. smtps.test and submission.test
# reach it through the client's smtproutes (465 and 587), badpass.test
# with a wrong password, noauth.test on 587 without credentials.
EX_AUTH_DOMAINS="smtps.test submission.test badpass.test noauth.test"
# The DANE cases' domains (4a) and mailboxes, one per case.
if [ "$DANE" = 1 ]; then
	# (Domains on one line: they end up in main.cf and exim.conf.)
	PF_DOMAINS="$PF_DOMAINS ee-pf.dane.test ee302-pf.dane.test roll-pf.dane.test bad-pf.dane.test"
	PF_DOMAINS="$PF_DOMAINS bogus-pf.dane.test lame-pf.dane.test insecure.dane.test badkey.dane.test"
	PF_BOXES="$PF_BOXES ee311@ee-pf.dane.test only@ee-pf.dane.test nodnssec@ee-pf.dane.test
ee302@ee302-pf.dane.test roll@roll-pf.dane.test bad@bad-pf.dane.test bogus@bogus-pf.dane.test
lame@lame-pf.dane.test may@insecure.dane.test only@insecure.dane.test bogus@badkey.dane.test"
	EX_DOMAINS="$EX_DOMAINS ee-ex.dane.test ta-ex.dane.test tabad-ex.dane.test bad-ex.dane.test"
	EX_DOMAINS="$EX_DOMAINS nodata-ex.dane.test next.dane.test"
	EX_BOXES="$EX_BOXES ee311 ta211 tabad bad may only next nodnssec"
	OS_DOMAINS="$OS_DOMAINS ee-os.dane.test nodata-os.dane.test"
	OS_BOXES="$OS_BOXES ee311@ee-os.dane.test may@nodata-os.dane.test"
fi
# The MTA-STS cases' domains (6c) and mailboxes, and the TLS report's.
# sts-next.test is Exim's too, so that a delivery to its MX 10 (Exim,
# which must be refused) would show.
if [ "$STS" = 1 ]; then
	PF_DOMAINS="$PF_DOMAINS sts-enforce.test sts-nomx.test sts-next.test sts-fetchfail.test sts-webpki.test"
	PF_BOXES="$PF_BOXES enforce@sts-enforce.test cached@sts-enforce.test nomx@sts-nomx.test off@sts-nomx.test
stsnext@sts-next.test fetchfail@sts-fetchfail.test webpki@sts-webpki.test tlsrpt@v4.test"
	EX_DOMAINS="$EX_DOMAINS sts-badcert.test sts-next.test sts-testing.test"
	EX_BOXES="$EX_BOXES stsbad stsnext ststest"
fi
AUTH_USER=relayuser
# A space and colons: the password is the rest of the smtpauth line.
AUTH_PASS='p4ss word:with:colons'
AUTH_BAD='wrong:p4ss word'

PC=$T/postfix/etc
PQ=$T/postfix/spool
mkdir -p "$PC" "$PQ" "$T/postfix/data" "$T/postfix/mail"
chown postfix "$T/postfix/data"
chown nobody:nogroup "$T/postfix/mail"
for d in active bounce corrupt defer deferred flush hold incoming private saved trace; do
	mkdir -p "$PQ/$d"
	chown postfix "$PQ/$d"
	chmod 0700 "$PQ/$d"
done
mkdir -p "$PQ/public" "$PQ/maildrop" "$PQ/pid"
chown postfix:postdrop "$PQ/public" "$PQ/maildrop"
chmod 0710 "$PQ/public"
chmod 1730 "$PQ/maildrop"
cp -R "$R/etc/postfix/." "$PC/"
map=
for a in $PF_BOXES; do map="$map${map:+,} $a=${a#*@}/${a%@*}/"; done
cat >"$PC/main.cf" <<EOF
compatibility_level = 3.6
config_directory = $PC
queue_directory = $PQ
data_directory = $T/postfix/data
command_directory = $R/usr/sbin
daemon_directory = $PFLIB/sbin
shlib_directory = $PFLIB
meta_directory = $PC
mail_owner = postfix
setgid_group = postdrop
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH=$PFLIB
maillog_file = /dev/stdout
myhostname = mx-postfix.test
mydomain = test
myorigin = \$myhostname
mydestination =
inet_interfaces = all
inet_protocols = all
mynetworks = 127.0.0.0/8 [::1]/128
smtpd_banner = \$myhostname ESMTP Postfix (qmail-remote-go interop)
alias_maps =
alias_database =
local_recipient_maps =
relay_domains =
virtual_mailbox_domains = $PF_DOMAINS
virtual_mailbox_base = $T/postfix/mail
virtual_mailbox_maps = inline:{$map}
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
default_transport = error:interop test bed: no outbound mail
relay_transport = error:interop test bed: no outbound mail
biff = no
smtputf8_enable = yes
smtpd_tls_security_level = may
smtpd_tls_chain_files = $TD/mx-postfix.test.key, $TD/mx-postfix.test.pem
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
# Only the ccert service (port 2527) asks for a client certificate.
smtpd_tls_CAfile = $TD/ca.pem
EOF
cat >"$PC/master.cf" <<'EOF'
# service type  private unpriv  chroot  wakeup  maxproc command
smtp      inet  n       -       n       -       -       smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
# A server without STARTTLS (reached through smtproutes, notls.test).
2525      inet  n       -       n       -       -       smtpd -o smtpd_tls_security_level=none
# A server whose SIZE limit (10240) is smaller than the small message
# (reached through smtproutes, size.test): its log lines say postfix/size.
2526      inet  n       -       n       -       -       smtpd -o message_size_limit=10240 -o syslog_name=postfix/size
# A server that requires TLS and a client certificate from the test CA
# (reached through smtproutes, ccert.test): logs as postfix/ccert.
2527      inet  n       -       n       -       -       smtpd -o smtpd_tls_security_level=encrypt -o smtpd_tls_req_ccert=yes -o syslog_name=postfix/ccert
EOF
# master -s is what "postfix start-fg" runs: foreground, and maillog_file
# may be /dev/stdout (there is no syslog in the namespace to log to).
start "$NS_PF" "$T/postfix/log" env LD_LIBRARY_PATH="$PFLIB" MAIL_CONFIG="$PC" \
	"$PFLIB/sbin/master" -c "$PC" -s

# ---------------------------------------------------------------------------
# 6. Exim: our own config (-C), Maildir per address under $T/exim/mail;
# unknown local parts refused at RCPT time. Exim gives up root when it
# re-executes itself with -C for a delivery (the file is not in Debian's
# TRUSTED_CONFIG_LIST, which we leave alone), so it delivers as its own
# user, Debian-exim, the uid it is left with.

EC=$T/exim/exim.conf
mkdir -p "$T/exim/spool" "$T/exim/log" "$T/exim/mail"
chown Debian-exim:Debian-exim "$T/exim/spool" "$T/exim/log"
chown Debian-exim:Debian-exim "$T/exim/mail"
cat >"$EC" <<EOF
primary_hostname = mx-exim.test
exim_path = $R/usr/sbin/exim4
spool_directory = $T/exim/spool
log_file_path = $T/exim/log/%slog
# user@[192.0.2.26] and user@[IPv6:2001:db8::26] (listed in local_domains,
# whose separator is ";" for the IPv6 one): the address-literal host
# arguments. (Exim's @[] would not do: it compares the literal with its
# interface addresses as they are, so [IPv6:...] never matches.)
allow_domain_literals = true
domainlist local_domains = <; ${EX_DOMAINS// / ; } ; [$EX4] ; [IPv6:$EX6]
domainlist auth_domains = ${EX_AUTH_DOMAINS// / : }
daemon_smtp_ports = 25 : 465 : 587
tls_on_connect_ports = 465
auth_advertise_hosts = \${if eq{\$tls_in_cipher}{}{}{*}}
host_lookup =
rfc1413_hosts =
tls_advertise_hosts = *
tls_certificate = $TD/mx-exim.test.chain.pem
tls_privatekey = $TD/mx-exim.test.key
keep_environment =
message_size_limit = 100M
log_selector = +pipelining +received_recipients +incoming_interface +smtp_connection +smtp_no_mail +tls_sni
acl_smtp_rcpt = acl_rcpt

begin acl
acl_rcpt:
  deny    message = relay not permitted
          !domains = +local_domains : +auth_domains
  deny    message = authentication required
          domains = +auth_domains
          !authenticated = *
  deny    message = authentication required
          condition = \${if ={\$received_port}{25}{no}{yes}}
          !authenticated = *
  require verify = recipient
  accept

begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = \${if and{{eq{\$auth2}{$AUTH_USER}}{eq{\$auth3}{$AUTH_PASS}}}}
  server_set_id = \$auth2
  # Port 587 offers LOGIN only, so the chain's LOGIN runs against Exim too.
  server_advertise_condition = \${if ={\$received_port}{587}{no}{yes}}
login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = \${if and{{eq{\$auth1}{$AUTH_USER}}{eq{\$auth2}{$AUTH_PASS}}}}
  server_set_id = \$auth1

begin routers
mailbox:
  driver = accept
  domains = +local_domains : +auth_domains
  local_parts = ${EX_BOXES// / : }
  transport = maildir

begin transports
maildir:
  driver = appendfile
  directory = $T/exim/mail/\$domain_data/\$local_part_data
  maildir_format
  create_directory
  return_path_add
  envelope_to_add
  delivery_date_add = false
  user = Debian-exim
  group = Debian-exim
  mode = 0600

begin retry
*  *  F,1h,10m
EOF
start "$NS_EX" "$T/exim/stderr.log" "$R/usr/sbin/exim4" -C "$EC" -bdf

# ---------------------------------------------------------------------------
# 6b. OpenSMTPD: our own config (-f), in the foreground (-d, logging to
# stderr), Maildir per address under $T/smtpd/mail, delivered as nobody
# (a virtual table maps each address to that user; any other address is
# refused at RCPT time). Its paths are compiled in: the queue under
# /var/spool/smtpd, the control socket /var/run/smtpd.sock, the chroot
# /var/lib/opensmtpd/empty, the delivery helpers under
# /usr/libexec/opensmtpd. So it runs in a mount namespace of its own where
# /var is an empty tmpfs and /usr/libexec holds only the unpacked helpers;
# the host's /var and /usr are never touched (and no other OpenSMTPD, or
# another run of this script, can collide with it).
#
# Its STARTTLS does not work: Debian 12's OpenSMTPD 6.8.0p2 signs the
# handshake through its privilege-separated key process, which fails under
# OpenSSL 3 with any key type ("EVP lib" / "internal error" alert;
# upstream issues #1171 and #1239, fixed in 7.x). It still offers
# STARTTLS, so it stands for a server with broken TLS: levels 0 and 1 must
# deliver in cleartext, level 2 must refuse it.

OD=$T/smtpd
mkdir -p "$OD/mail"
chown nobody:nogroup "$OD/mail"
for a in $OS_BOXES; do printf '%s nobody\n' "$a"; done >"$OD/vusers"
cat >"$OD/smtpd.conf" <<EOF
pki mx-smtpd.test cert "$TD/mx-smtpd.test.pem"
pki mx-smtpd.test key "$TD/mx-smtpd.test.key"
table vusers file:$OD/vusers
table domains { $(for d in $OS_DOMAINS; do printf '"%s", ' "$d"; done | sed 's/, $//') }
listen on $OS4 tls pki mx-smtpd.test hostname mx-smtpd.test
listen on $OS6 tls pki mx-smtpd.test hostname mx-smtpd.test
listen on $BH4 tls pki mx-smtpd.test hostname mx-smtpd.test
listen on $BH6 tls pki mx-smtpd.test hostname mx-smtpd.test
action "box" maildir "$OD/mail/%{rcpt.domain}/%{rcpt.user}" virtual <vusers>
match from any for domain <domains> action "box"
EOF
cat >"$OD/run" <<EOF
#!/bin/sh
set -e
mount -t tmpfs -o mode=0755 qrint-var /var
mkdir -p /var/run /var/spool /var/lib/opensmtpd/empty
mount -t tmpfs -o mode=0755 qrint-libexec /usr/libexec
mkdir /usr/libexec/opensmtpd
mount --bind "$R/usr/libexec/opensmtpd" /usr/libexec/opensmtpd
exec "$R/usr/sbin/smtpd" -d -f "$OD/smtpd.conf" "\$@"
EOF
chmod 0755 "$OD/run"
in_ns "$NS_OS" unshare -m --propagation private "$OD/run" -n >"$OD/check.log" 2>&1 ||
	die "OpenSMTPD config rejected: $(cat "$OD/check.log")"
start "$NS_OS" "$OD/log" unshare -m --propagation private "$OD/run"

# ---------------------------------------------------------------------------
# 6c. The MTA-STS policy servers (not with --no-sts or --no-tls): openssl
# s_server on port 443 of the sts host, one per policy, each serving
# .well-known/mta-sts.txt from a directory of its own under $T/sts, with
# the certificate naming mta-sts.DOMAIN of every policy domain (SNI is
# sent; one certificate serves them all). -WWW sends the file after
# "HTTP/1.0 200 ok" and "Content-type: text/plain"; -HTTP sends the file
# as the whole response (the 404 server's). The domains (4):
#   sts-enforce     MX pf4.mx (Postfix, in its certificate): enforce, K
#   sts-nomx        MX pf6.mx (Postfix), not named by the policy: Z
#   sts-badcert     MX badname.mx (Exim, not in its certificate): Z
#   sts-next        MX 10 badname.mx, MX 20 pf4.mx: K from MX 20
#   sts-testing     MX badname.mx, testing: K (the mismatch logged)
#   sts-fetchfail   its policy server answers 404: K, fetch error logged
#   sts-webpki      its policy server (the enforce one) has a certificate
#                   that does not name mta-sts.sts-webpki.test: K
# The enforce policy (CRLF line ends) names pf4.mx.test and
# badname.mx.test; the testing one (LF) names badname.mx.test.
SD=$T/sts
if [ "$STS" = 1 ]; then
	for p in enforce testing 404; do mkdir -p "$SD/$p/.well-known"; done
	printf 'version: STSv1\r\nmode: enforce\r\nmx: pf4.mx.test\r\nmx: badname.mx.test\r\nmax_age: 86400\r\n' \
		>"$SD/enforce/.well-known/mta-sts.txt"
	printf 'version: STSv1\nmode: testing\nmx: badname.mx.test\nmax_age: 86400\n' \
		>"$SD/testing/.well-known/mta-sts.txt"
	printf 'HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno policy here\r\n' \
		>"$SD/404/.well-known/mta-sts.txt"
	for s in "enforce WWW $STS4 enforce4" "enforce WWW [$STS6] enforce6" "testing WWW $STST4 testing4" \
		"404 HTTP $STSN4 404-4"; do
		read -r d m a l <<<"$s"
		start "$NS_STS" "$SD/$l.log" env -C "$SD/$d" openssl s_server "-$m" -accept "$a:443" \
			-cert "$TD/mta-sts.test.pem" -key "$TD/mta-sts.test.key"
	done
fi

# ---------------------------------------------------------------------------
# Wait (bounded) until DNS answers on both families and both MTAs greet.

wait_dns() { # [ns a4 a6 what log...]: unbound by default
	local ns=${1:-$NS_DNS} a4=${2:-$DNS4} a6=${3:-$DNS6} what=${4:-unbound}
	[ $# -ge 4 ] && shift 4
	[ $# -gt 0 ] || set -- "$T/dns/stderr.log" "$T/dns/unbound.log"
	for _ in $(seq 1 100); do
		l=$(in_ns "$ns" ss -Hlun 'sport = :53' 2>/dev/null || true)
		case $l in *"$a4"*"$a6"* | *"$a6"*"$a4"*) return 0 ;; esac
		sleep 0.2
	done
	die "$what is not listening after 20 s: $(cat "$@" 2>/dev/null)"
}
greets() { # ip: read the first 3 bytes of the greeting from the client namespace
	# shellcheck disable=SC2016 # $1 is the inner shell's
	in_ns "$NS_CL" timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/25" && head -c 3 <&3 && printf "QUIT\r\n" >&3' _ "$1" 2>/dev/null
}
wait_smtp() { # ip what log...
	ip=$1 what=$2
	shift 2
	for _ in $(seq 1 60); do
		[ "$(greets "$ip" || true)" = 220 ] && return 0
		sleep 0.5
	done
	die "$what does not greet on $ip port 25 after 30 s: $(tail -n 20 "$@" 2>/dev/null)"
}
wait_dns
if [ "$DANE" = 1 ]; then
	wait_dns "$NS_AUTH" "$AUTH4" "$AUTH6" NSD "$DZ/stderr.log" "$DZ/nsd.log"
	wait_dns "$NS_AUTH" "$REF4" "$REF6" "NSD (the refusing one)" "$T/refused/stderr.log" "$T/refused/nsd.log"
fi
if [ "$STS" = 1 ]; then
	for _ in $(seq 1 100); do
		[ "$(in_ns "$NS_STS" ss -Hltn 'sport = :443' 2>/dev/null | wc -l)" -ge 4 ] && break
		sleep 0.2
	done
	[ "$(in_ns "$NS_STS" ss -Hltn 'sport = :443' 2>/dev/null | wc -l)" -ge 4 ] ||
		die "the MTA-STS policy servers are not listening after 20 s: $(cat "$SD"/*.log)"
fi
for ip in $PF4 $PF6; do wait_smtp "$ip" Postfix "$T/postfix/log"; done
for ip in $EX4 $EX6; do wait_smtp "$ip" Exim "$T/exim/stderr.log" "$T/exim/log/mainlog" "$T/exim/log/paniclog"; done
for ip in $OS4 $OS6; do wait_smtp "$ip" OpenSMTPD "$OD/log"; done
say "test bed up: unbound $DNS4 $DNS6, Postfix $PF4 $PF6, Exim $EX4 $EX6, OpenSMTPD $OS4 $OS6 (blackholed: $BH4 $BH6)"
[ "$DANE" = 1 ] && say "DANE: dane.test signed, NSD $AUTH4 $AUTH6 (refusing: $REF4 $REF6), unbound validating it"
[ "$STS" = 1 ] && say "MTA-STS: policy servers (openssl s_server, port 443): enforce $STS4 $STS6, testing $STST4, 404 $STSN4"

# ---------------------------------------------------------------------------
# 7. The messages, in qmail's queue format: LF line ends, no CR anywhere.
# Not in them, on purpose: NUL bytes and bare CRs. The chain turns a bare CR
# into CRLF (SPEC 7), so what the MTA stores could not equal the input.

mkmsg() { # case-name body-kind > file
	printf 'Received: (qmail 4242 invoked by uid 1000); 25 Nov 2026 12:00:00 -0000\n'
	printf 'Date: Wed, 25 Nov 2026 12:00:00 +0000\n'
	printf 'From: Interop Sender <sender@client.test>\n'
	printf 'To: interop@test\n'
	printf 'Subject: qmail-remote-go interop %s\n' "$1"
	printf 'Message-ID: <%s.%s@client.test>\n' "$1" "$$"
	printf 'MIME-Version: 1.0\n'
	printf 'Content-Type: text/plain; charset=iso-8859-1\n'
	printf 'Content-Transfer-Encoding: 8bit\n'
	printf '\n'
	# Transparency (RFC 5321 4.5.2): lines that are, or start with, dots.
	printf '.\n..\n...\n. a line starting with a dot\n.. two dots\n'
	printf '\n.\n\n'
	# Text that must stay text (smuggling attempts, RFC 5321 commands).
	printf 'QUIT\nMAIL FROM:<evil@client.test>\nRCPT TO:<evil@test>\nDATA\n'
	printf 'From the mbox point of view this line is special\n'
	printf '>From too\n'
	# 8-bit bytes, every one from 0x80 to 0xff, and a tab and trailing spaces.
	printf 'caf\351 na\357ve \374ber \344\366\374 \200\201\237\240\377\n'
	i=128
	line=
	while [ $i -le 255 ]; do
		# shellcheck disable=SC2059 # the format is the octal escape
		line=$line$(printf "\\$(printf '%03o' $i)")
		i=$((i + 1))
	done
	printf '%s\n' "$line"
	printf 'tab\there, trailing spaces   \n'
	# Long lines: 998 bytes, the most RFC 5321 4.5.3.1.6 allows before the
	# CRLF, and a 997-byte one starting with a dot (998 after stuffing).
	awk 'BEGIN { s = ""; for (i = 0; i < 998; i++) s = s sprintf("%c", 97 + i % 26); print s
	             s = "."; for (i = 1; i < 997; i++) s = s sprintf("%c", 65 + i % 26); print s }'
	case $2 in
	small)
		awk 'BEGIN { for (i = 1; i <= 300; i++) {
			if (i % 10 == 0) printf ".line %d starts with a dot\n", i
			else if (i % 17 == 0) printf "\n"
			else printf "line %d of the interop message: the quick brown fox\n", i } }'
		;;
	big | huge)
		# About 2 MiB (50 MiB): varied lengths, dots at line starts, a
		# blank line now and then.
		max=2097152
		[ "$2" = huge ] && max=52428800
		awk -v max="$max" 'BEGIN { n = 0; i = 0; while (n < max) { i++
			len = (i * 37) % 200
			s = ((i % 7 == 0) ? "." : "") sprintf("%07d ", i)
			while (length(s) < len) s = s "0123456789abcdefghij"
			if (length(s) > len && len > 9) s = substr(s, 1, len)
			if (i % 101 == 0) s = ""
			print s; n += length(s) + 1 } }'
		;;
	esac
	printf 'last line\n'
}

MSGS=$T/msgs
mkdir -p "$MSGS"
mkmsg small small >"$MSGS/small"
mkmsg big big >"$MSGS/big"
say "messages: small $(wc -c <"$MSGS/small") bytes, $(wc -l <"$MSGS/small") lines; big $(wc -c <"$MSGS/big") bytes"
if [ "$SELFTEST" = 0 ]; then
	mkmsg huge huge >"$MSGS/huge"
	say "message: huge $(wc -c <"$MSGS/huge") bytes"
fi

# ---------------------------------------------------------------------------
# 8. The client side: a qmail home with control/me only (no smtproutes), the
# stock tcpto file, and qmail-remote run the way qmail-rspawn runs it: as an
# unprivileged user, fd 0 the message, fd 1 and fd 2 the same pipe.

QH=$T/qmail
mkdir -p "$QH/control" "$QH/queue/lock" "$QH/run/qmail-remote"
echo client.test >"$QH/control/me"
echo 10 >"$QH/control/timeoutconnect"
echo 60 >"$QH/control/timeoutremote"
echo 30 >"$QH/control/timeoutdns"
# As qmail's installer makes it: 1024 zero bytes, 64 free slots (an empty
# file has no slot, so nothing would ever be recorded).
head -c 1024 /dev/zero >"$QH/queue/lock/tcpto"
chown -R nobody:nogroup "$QH/queue" "$QH/run"
# Same, plus trust anchors and a strictness, for the --tls cases.
for strict in 0 1 2; do
	q=$T/qmail-tls$strict
	cp -R "$QH" "$q"
	echo "$TD/ca.pem" >"$q/control/trustanchors"
	echo "$strict" >"$q/control/tlsstrictness"
	# notls.test: Postfix's port 2525 service, which offers no STARTTLS;
	# the relay name is in Postfix's certificate, so the only thing
	# missing is STARTTLS itself.
	echo "notls.test:pf4.mx.test:2525" >"$q/control/smtproutes"
	chown -R nobody:nogroup "$q/queue" "$q/run"
done
# The smarthost cases (with TLS): the routes to Exim's ports 465 and 587,
# and control/smtpauth, mode 0600 and owned by the user qmail-remote runs
# as (nobody here, qmailr in production). The 587 line spells the relay in
# capitals: relays match case-insensitively. badpass.test goes to the same
# server under another of its names (ex4.mx.test, in its certificate) with
# a wrong password; noauth.test to port 587 with no credentials at all.
QA=$T/qmail-auth
cp -R "$QH" "$QA"
echo "$TD/ca.pem" >"$QA/control/trustanchors"
# A chain that does not speak SMTPS waits for a greeting port 465 never
# sends: give up after 5 s per address, not 60.
echo 5 >"$QA/control/timeoutremote"
cat >"$QA/control/smtproutes" <<EOF
smtps.test:mx-exim.test:465
submission.test:mx-exim.test:587
badpass.test:ex4.mx.test:465
noauth.test:ex6.mx.test:587
EOF
cat >"$QA/control/smtpauth" <<EOF
# relay:port:method:user:password
mx-exim.test:465:smtps:$AUTH_USER:$AUTH_PASS
MX-EXIM.TEST:587:starttls:$AUTH_USER:$AUTH_PASS
ex4.mx.test:465:smtps:$AUTH_USER:$AUTH_BAD
EOF
chown -R nobody:nogroup "$QA/queue" "$QA/run"
chown nobody:nogroup "$QA/control/smtpauth"
chmod 0600 "$QA/control/smtpauth"
# The blackhole cases: a short timeoutconnect (the dropped SYNs cost 2 s per
# attempt, not 10) and a tcpto of their own.
QB=$T/qmail-bh
cp -R "$QH" "$QB"
echo 2 >"$QB/control/timeoutconnect"
chown -R nobody:nogroup "$QB/queue" "$QB/run"
# The loop rule: Postfix's addresses are "this host" (control/ipme).
QI=$T/qmail-ipme
cp -R "$QH" "$QI"
printf '%s\n' "$PF4" "$PF6" >"$QI/control/ipme"
chown -R nobody:nogroup "$QI/queue" "$QI/run"
# The client certificate: Postfix's port 2527 requires one from the test
# CA; qmail-ccert presents it, qmail-noccert (otherwise the same) has none.
for q in "$T/qmail-ccert" "$T/qmail-noccert"; do
	cp -R "$QH" "$q"
	echo "$TD/ca.pem" >"$q/control/trustanchors"
	echo 2 >"$q/control/tlsstrictness"
	echo "ccert.test:pf4.mx.test:2527" >"$q/control/smtproutes"
	chown -R nobody:nogroup "$q/queue" "$q/run"
done
echo "$TD/client.test.pem" >"$T/qmail-ccert/control/clientcert"
echo "$TD/client.test.key" >"$T/qmail-ccert/control/clientkey"
# The DANE homes (4a): control/tlspolicy, and no trust anchors (DANE needs
# none, so the DANE-TA case can only have taken its CA from the TLSA
# record). qmail-dane (every destination at dane) and qmail-daneonly (at
# dane-only) name unbound in control/dnssecresolvers: it is not on
# loopback, so only then does the chain trust its AD bit. qmail-nodnssec
# does not: ee-pf.dane.test at dane-only and ee-ex.dane.test at dane.
if [ "$DANE" = 1 ]; then
	for h in dane daneonly nodnssec; do
		q=$T/qmail-$h
		cp -R "$QH" "$q"
		[ "$h" = nodnssec ] || printf '%s\n' "$DNS4" "$DNS6" >"$q/control/dnssecresolvers"
		chown -R nobody:nogroup "$q/queue" "$q/run"
	done
	echo ':dane' >"$T/qmail-dane/control/tlspolicy"
	echo ':dane-only' >"$T/qmail-daneonly/control/tlspolicy"
	printf '%s\n' 'ee-pf.dane.test:dane-only' 'ee-ex.dane.test:dane' >"$T/qmail-nodnssec/control/tlspolicy"
fi
# The MTA-STS homes (6c): trust anchors (the test CA, which issued the
# policy servers' certificates too), tlsstrictness 0 (the default), no
# tlspolicy, no smtproutes, so MTA-STS applies to every destination;
# qmail-stsoff is the same with control/mtasts 0. Each has its own run
# directory, so its TLS report log (run/qmail-remote/tlsrpt/) and policy
# cache (run/qmail-remote/mta-sts/) hold only its cases. qmail-sts/bin
# holds the stand-in qmail-inject that qmail-remote-tlsrpt runs: it
# delivers the report through the chain at once, to the recipient's
# domain, keeping what it was given under $T/inject, and exits 0 only
# when qmail-remote says K.
QS=$T/qmail-sts
INJ=$T/inject
if [ "$STS" = 1 ]; then
	for q in "$QS" "$T/qmail-stsoff"; do
		cp -R "$QH" "$q"
		echo "$TD/ca.pem" >"$q/control/trustanchors"
		chown -R nobody:nogroup "$q/queue" "$q/run"
	done
	echo 0 >"$T/qmail-stsoff/control/mtasts"
	mkdir -p "$QS/bin" "$INJ"
	chown nobody:nogroup "$INJ"
	cat >"$QS/bin/qmail-inject" <<EOF
#!/bin/sh
# qmail-inject's stand-in (tools/interop/run.sh): -f SENDER ADDR, the mail
# on stdin, delivered now through the chain to ADDR's domain.
[ \$# = 3 ] && [ "\$1" = -f ] || { echo "qmail-inject (stand-in): want -f SENDER ADDR, got: \$*" >&2; exit 100; }
n=\$((\$(cat $INJ/args 2>/dev/null | wc -l) + 1))
printf '%s\n' "\$*" >>$INJ/args
cat >$INJ/msg.\$n || exit 111
env -i PATH=/usr/bin:/bin QMAILREMOTE_QMAILHOME=$QS QMAILREMOTE_LIBEXECDIR=$BIN QMAILREMOTE_REALEXEC=$REALEXEC \\
	$BIN/qmail-remote "\${3##*@}" "\$2" "\$3" <$INJ/msg.\$n >$INJ/out.\$n 2>&1
tr '\0' '\n' <$INJ/out.\$n | grep -q '^K' && exit 0
echo "qmail-inject (stand-in): qmail-remote did not deliver: \$(tr '\0\n' '|/' <$INJ/out.\$n)" >&2
exit 111
EOF
	chmod 0755 "$QS/bin/qmail-inject"
fi
# The spy (smarthost cases, chain only): a LIBEXECDIR whose every program
# is a wrapper that appends its argv and environment to $SPYLOG and execs
# the real stage, so a check can show that the password reached no stage's
# environment or argv. qmail-remote-io hands the TLS stage its own path
# (the absolute path it was run by): the wrapper turns such arguments back
# into the spy's, so io's run under TLS is seen too.
SPY=$T/spy
SPYLOG=$SPY/log
mkdir -p "$SPY"
for p in $PROGS; do
	cat >"$SPY/$p" <<EOF
#!/bin/sh
{ printf '== %s' "\$0"; printf ' [%s]' "\$@"; echo; tr '\\0' '\\n' </proc/\$\$/environ; echo; } >>$SPYLOG
for a do
	shift
	case \$a in $BIN/*) a=$SPY/\${a#$BIN/} ;; esac
	set -- "\$@" "\$a"
done
exec $BIN/$p "\$@"
EOF
	chmod 0755 "$SPY/$p"
done
: >"$SPYLOG"
chown nobody:nogroup "$SPYLOG"
# The SIZE case: a Postfix service whose limit is smaller than the message.
# The literal relays: OpenSMTPD by its IPv4 and IPv6 address, and Postfix's
# port 2525 by its IPv6 address and a port.
cat >"$QH/control/smtproutes" <<EOF
size.test:pf4.mx.test:2526
lit4.test:[$OS4]
lit6.test:[$OS6]
litport.test:[$PF6]:2525
EOF
chmod a+r "$TD/ca.pem" "$TD/client.test.pem"
QHOME=$QH
chmod -R a+rX "$BIN" "$QH" "$MSGS"

# The stand-in client (--selftest): dig for MX and A/AAAA, bash /dev/tcp
# for SMTP (no pipelining, one recipient per RCPT, dot-stuffing by sed).
# It writes qmail-remote reports so the same checks apply. Not a model of
# the chain: just enough to prove the test bed.
standin() { # host sender rcpt...
	host=$1 sender=$2
	shift 2
	mx=$(dig +short +tries=2 +time=2 MX "$host")
	status=$(dig +tries=2 +time=2 MX "$host" | sed -n 's/.*status: \([A-Z]*\).*/\1/p')
	if [ "$status" = NXDOMAIN ]; then
		printf "DSorry, I couldn't find any host named %s. (#5.1.2)\\0" "$host"
		return 0
	fi
	case $mx in "0 .") printf 'DSorry, %s does not accept mail (null MX). (#5.1.10)\0' "$host"; return 0 ;; esac
	[ -n "$mx" ] || mx="0 $host."
	addrs=$(printf '%s\n' "$mx" | sort -n | while read -r _ name; do
		dig +short AAAA "$name"
		dig +short A "$name"
	done)
	for ip in $addrs; do
		{ exec 3<>"/dev/tcp/$ip/25"; } 2>/dev/null || continue
		reply() { # read one (multi-line) reply into $code/$text
			text=
			while IFS= read -r -t 30 l <&3; do
				l=${l%$'\r'}
				text="$text${text:+/}$l"
				[ "${l:3:1}" = "-" ] || break
			done
			code=${l:0:3}
		}
		reply
		[ "$code" = 220 ] || { exec 3<&-; continue; }
		printf 'HELO client.test\r\n' >&3
		reply
		printf 'MAIL FROM:<%s>\r\n' "$sender" >&3
		reply
		[ "${code:0:1}" = 2 ] || { printf 'D%s sender rejected: %s\0' "$ip" "$text"; return 0; }
		ok=0
		for r in "$@"; do
			printf 'RCPT TO:<%s>\r\n' "$r" >&3
			reply
			case $code in
			2*) printf 'r\0'; ok=1 ;;
			5*) printf 'h%s does not like recipient.\nRemote host said: %s\0' "$ip" "$text" ;;
			*) printf 's%s does not like recipient.\nRemote host said: %s\0' "$ip" "$text" ;;
			esac
		done
		if [ $ok = 0 ]; then
			printf 'QUIT\r\n' >&3
			printf 'DGiving up on %s.\n\0' "$ip"
			return 0
		fi
		printf 'DATA\r\n' >&3
		reply
		sed 's/^\./../; s/$/\r/' >&3
		printf '.\r\n' >&3
		reply
		printf 'QUIT\r\n' >&3
		exec 3<&-
		case $code in
		2*) printf 'K%s accepted message.\nRemote host said: %s\0' "$ip" "$text" ;;
		5*) printf 'D%s failed after I sent the message.\nRemote host said: %s\0' "$ip" "$text" ;;
		*) printf 'Z%s failed after I sent the message.\nRemote host said: %s\0' "$ip" "$text" ;;
		esac
		return 0
	done
	printf "ZSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\\0"
}

# The stand-in for a smarthost session (--selftest): openssl s_client as a
# coprocess (implicit TLS on smtps, STARTTLS on starttls), the certificate
# verified against the test CA and NAME, AUTH PLAIN unless CRED is empty,
# then one lock-step transaction; reports as qmail-remote writes them.
standin_auth() { # name ip port smtps|starttls user pass ca sender rcpt...
	local name=$1 ip=$2 port=$3 mode=$4 user=$5 pass=$6 ca=$7 sender=$8 addr code text l r ok method=
	shift 8
	addr=$ip
	case $ip in *:*) addr="[$ip]" ;; esac
	reply() {
		text=
		code=
		while IFS= read -r -t 30 l <&"${SC[0]}"; do
			l=${l%$'\r'}
			text="$text${text:+/}$l"
			[ "${l:3:1}" = "-" ] || break
		done
		code=${l:0:3}
	}
	send() { printf '%s\r\n' "$1" >&"${SC[1]}"; }
	if [ "$mode" = smtps ]; then
		coproc SC { exec openssl s_client -quiet -connect "$addr:$port" -servername "$name" \
			-verify_hostname "$name" -verify_return_error -CAfile "$ca" 2>/dev/null; }
		reply
	else
		coproc SC { exec openssl s_client -quiet -starttls smtp -name client.test -connect "$addr:$port" \
			-servername "$name" -verify_hostname "$name" -verify_return_error -CAfile "$ca" 2>/dev/null; }
		code=220
	fi
	[ "$code" = 220 ] || { printf "ZSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\\0"; return 0; }
	send "EHLO client.test"
	reply
	if [ -n "$user" ]; then
		case $text in
		*/250[-\ ]AUTH*PLAIN*)
			method=PLAIN
			send "AUTH PLAIN $(printf '\0%s\0%s' "$user" "$pass" | base64 -w0)"
			reply
			;;
		*/250[-\ ]AUTH*LOGIN*)
			method=LOGIN
			send "AUTH LOGIN"
			reply
			[ "$code" = 334 ] && send "$(printf '%s' "$user" | base64 -w0)" && reply
			[ "$code" = 334 ] && send "$(printf '%s' "$pass" | base64 -w0)" && reply
			;;
		*) printf 'Z%s offers no AUTH PLAIN or LOGIN: %s\0' "$ip" "$text"; return 0 ;;
		esac
		case $code in
		235) ;;
		*)
			# As the chain words it: the reply's code only (it might
			# quote the credentials).
			printf 'Z%s: AUTH %s as %s failed; check control/smtpauth.\nRemote host said: %s (the rest of this reply is not shown: it might quote the credentials)\0' \
				"$ip" "$method" "$user" "$code"
			send QUIT
			return 0
			;;
		esac
	fi
	send "MAIL FROM:<$sender>"
	reply
	ok=0
	for r in "$@"; do
		send "RCPT TO:<$r>"
		reply
		case $code in
		2*) printf 'r\0'; ok=1 ;;
		5*) printf 'h%s does not like recipient.\nRemote host said: %s\0' "$ip" "$text" ;;
		*) printf 's%s does not like recipient.\nRemote host said: %s\0' "$ip" "$text" ;;
		esac
	done
	if [ $ok = 0 ]; then
		send QUIT
		printf 'DGiving up on %s.\n\0' "$ip"
		return 0
	fi
	send DATA
	reply
	sed 's/^\./../; s/$/\r/' >&"${SC[1]}"
	send .
	reply
	send QUIT
	case $code in
	2*) printf 'K%s accepted message.\nRemote host said: %s\nTLS: TLSv1.3 (stand-in), certificate verified.\n%s\0' \
		"$ip" "$text" "${user:+Authenticated as $user.}" ;;
	*) printf 'Z%s failed after I sent the message.\nRemote host said: %s\0' "$ip" "$text" ;;
	esac
}

# AUTHVIA, for the stand-in only: "NAME IP PORT MODE CRED" says where the
# chain's smtproutes and smtpauth would take the smarthost cases (CRED good,
# bad or none).
AUTHVIA=
LIBEXEC=
deliver() { # out-file msg-file host sender rcpt...
	local out msg v
	out=$1 msg=$2
	shift 2
	if [ "$SELFTEST" = 1 ] && [ -n "$AUTHVIA" ]; then
		# shellcheck disable=SC2086
		set -- $AUTHVIA "$@"
		case $5 in
		good) v="$AUTH_USER $AUTH_PASS" ;;
		bad) v="$AUTH_USER $AUTH_BAD" ;;
		*) v=" " ;;
		esac
		in_ns "$NS_CL" timeout 120 bash -c "$(declare -f standin_auth); standin_auth \"\$@\"" _ \
			"$1" "$2" "$3" "$4" "${v%% *}" "${v#* }" "$TD/ca.pem" "${@:7}" \
			<"$msg" >"$out" 2>&1 || echo "(exit $?)" >>"$out"
	elif [ "$SELFTEST" = 1 ]; then
		# shellcheck disable=SC2034
		in_ns "$NS_CL" timeout 120 bash -c "$(declare -f standin); standin \"\$@\"" _ "$@" \
			<"$msg" >"$out" 2>&1 || echo "(exit $?)" >>"$out"
	else
		in_ns "$NS_CL" timeout 120 setpriv --reuid=nobody --regid=nogroup --clear-groups \
			env -i PATH=/usr/bin:/bin QMAILREMOTE_QMAILHOME="$QHOME" QMAILREMOTE_LIBEXECDIR="${LIBEXEC:-$BIN}" \
			QMAILREMOTE_REALEXEC="$REALEXEC" \
			"$BIN/qmail-remote" "$@" <"$msg" >"$out" 2>&1 || echo "(exit $?)" >>"$out"
	fi
	return 0
}

# ---------------------------------------------------------------------------
# 9. Checks.

# reports FILE: split qmail-remote's output at the NULs into REP[]; fail
# when there are bytes after the last NUL (a torn or unterminated report).
# A report's text may end with a newline (stock qmail-remote writes one
# before the NUL): drop it so the patterns below need not care.
REP=()
reports() {
	local x=
	REP=()
	while IFS= read -r -d '' x; do REP+=("${x%$'\n'}"); done <"$1"
	[ -z "$x" ]
}

# stored_ok MAILDIR MSG SENDER RCPT: exactly one message in MAILDIR/new,
# and it is exactly (a header block the MTA prepended) + (MSG byte for
# byte). The prepended block may only hold the trace and delivery fields
# Postfix and Exim add (Received, Return-Path, Delivered-To, X-Original-To,
# Envelope-to) and their continuation lines; Return-Path must carry the
# envelope sender and Delivered-To/Envelope-to the recipient.
WHY=
stored_ok() {
	local dir files f fs ms bad msg sender rcpt
	dir=$1/new msg=$2 sender=$3 rcpt=$4
	WHY=
	files=$(find "$dir" -type f 2>/dev/null | wc -l)
	[ "$files" = 1 ] || {
		WHY="$files messages in $dir (want 1)"
		return 1
	}
	f=$(find "$dir" -type f)
	fs=$(wc -c <"$f") ms=$(wc -c <"$msg")
	[ "$fs" -gt "$ms" ] || {
		WHY="stored $fs bytes, original $ms: nothing prepended?"
		return 1
	}
	tail -c "$ms" "$f" | cmp -s - "$msg" || {
		WHY="stored message does not end with the original bytes: $(tail -c "$ms" "$f" | cmp - "$msg" 2>&1 | head -n 1)"
		return 1
	}
	local pre=$T/prefix
	head -c $((fs - ms)) "$f" >"$pre"
	[ "$(tail -c 1 "$pre" | od -An -c | tr -d ' ')" = '\n' ] || {
		WHY="prepended block does not end with a newline"
		return 1
	}
	bad=$(grep -Eiv '^(Received|Return-Path|Delivered-To|X-Original-To|Envelope-to):|^[[:space:]]' "$pre" || true)
	[ -z "$bad" ] || {
		WHY="unexpected prepended line: $bad"
		return 1
	}
	grep -qix "Return-Path: <$sender>" "$pre" || {
		WHY="no Return-Path: <$sender> in $(tr '\n' '|' <"$pre")"
		return 1
	}
	# -F: an address-literal domain is full of ERE metacharacters.
	grep -qixF -e "Delivered-To: $rcpt" -e "Envelope-to: $rcpt" "$pre" || {
		WHY="no Delivered-To/Envelope-to: $rcpt"
		return 1
	}
	return 0
}

# Postfix and Exim accept first and deliver right after: wait (bounded)
# for the mailbox to fill.
wait_box() { # maildir
	for _ in $(seq 1 100); do
		[ -n "$(find "$1/new" -type f 2>/dev/null | head -n 1)" ] && return 0
		sleep 0.2
	done
	return 0
}
box() { # address server
	case $2 in
	postfix) echo "$T/postfix/mail/${1#*@}/${1%@*}" ;;
	exim) echo "$T/exim/mail/${1#*@}/${1%@*}" ;;
	smtpd) echo "$OD/mail/${1#*@}/${1%@*}" ;;
	esac
}

RESULTS=()
FAILS=0
# For the interop table: each case's result and time (a sub-check CASE-x
# that fails marks CASE failed too).
declare -A RES_OF MS_OF
LAST_MS=
now_ms() { date +%s%3N; }
record() { # case server family result ms detail
	RESULTS+=("$(printf '%-12s %-8s %-6s %-5s %7s  %s' "$1" "$2" "$3" "$4" "$5" "$6")")
	[ "$4" = PASS ] || FAILS=$((FAILS + 1))
	[ "${RES_OF[$1]:-}" = FAIL ] || RES_OF[$1]=$4
	[ "$5" = - ] || MS_OF[$1]=$5
	printf '%-12s %-8s %-6s %s (%s ms)%s\n' "$1" "$2" "$3" "$4" "$5" "${7:+: $7}"
}
family() { case $1 in *:*) echo IPv6 ;; *) echo IPv4 ;; esac; }
show() { tr '\0\n' '|/' <"$1" | cut -c 1-300; }

# want_tls: whether the delivery must have been under TLS (yes/no): TLSWANT
# when set, else yes exactly when the qmail home has trust anchors.
TLSWANT=
want_tls() {
	if [ -n "$TLSWANT" ]; then
		echo "$TLSWANT"
	elif [ -s "$QHOME/control/trustanchors" ]; then
		echo yes
	else
		echo no
	fi
}

# expect_k CASE SERVER WANTIP(S) MSG HOST SENDER RCPT...: r for each
# recipient, then K from one of WANTIPS, and every recipient's mailbox
# holds the message exactly.
expect_k() {
	local name server want msg host sender out t0 ms fam detail k ip i r b
	name=$1 server=$2 want=$3 msg=$4 host=$5 sender=$6
	shift 6
	out=$T/out.$name
	t0=$(now_ms)
	deliver "$out" "$msg" "$host" "$sender" "$@"
	ms=$(($(now_ms) - t0))
	LAST_MS=$ms
	fam='?'
	detail=
	if ! reports "$out"; then
		detail="output not NUL-terminated: $(show "$out")"
	elif [ "${#REP[@]}" != $(($# + 1)) ]; then
		detail="${#REP[@]} reports, want $(($# + 1)): $(show "$out")"
	else
		k=${REP[$#]}
		for i in $(seq 0 $(($# - 1))); do
			[ "${REP[$i]:0:1}" = r ] || detail="recipient $((i + 1)) not r: $(show "$out")"
		done
		ip=${k#K}
		ip=${ip%% accepted message.*}
		case $k in K*" accepted message."*) ;; *) detail="not K: $(show "$out")" ;; esac
		fam=$(family "$ip")
		case " $want " in *" $ip "*) ;; *) detail="${detail:-K from $ip, want one of $want}" ;; esac
	fi
	if [ -z "$detail" ]; then
		for r in "$@"; do
			b=$(box "$r" "$server")
			wait_box "$b"
			if ! stored_ok "$b" "$msg" "$sender" "$r"; then
				detail="$r: $WHY"
			elif [ "$(want_tls)" = no ] && grep -q TLS "$T/prefix"; then
				# No trust anchors (or no STARTTLS offered): no TLS.
				detail="$r: the server's Received line says TLS: $(grep TLS "$T/prefix")"
			elif [ "$(want_tls)" = yes ] && ! grep -q TLS "$T/prefix"; then
				detail="$r: the server's Received line does not say TLS"
			fi
		done
	fi
	if [ -z "$detail" ]; then
		record "$name" "$server" "$fam" PASS "$ms" "$(printf '%s' "${REP[$#]}" | head -n 1)"
	else
		record "$name" "$server" "$fam" FAIL "$ms" "see below" "$detail"
		say "  transcript: $(show "$out")"
	fi
}

# expect_fail CASE SERVER FAMILY PATTERN... -- HOST SENDER RCPT...: the
# reports match the glob patterns, one per report, in order.
expect_fail() {
	local name server fam pats out t0 ms detail i
	name=$1 server=$2 fam=$3
	shift 3
	pats=()
	while [ "$1" != -- ]; do
		pats+=("$1")
		shift
	done
	shift
	out=$T/out.$name
	t0=$(now_ms)
	deliver "$out" "$MSGS/small" "$@"
	ms=$(($(now_ms) - t0))
	LAST_MS=$ms
	detail=
	if ! reports "$out"; then
		detail="output not NUL-terminated: $(show "$out")"
	elif [ "${#REP[@]}" != "${#pats[@]}" ]; then
		detail="${#REP[@]} reports, want ${#pats[@]}: $(show "$out")"
	else
		for i in "${!pats[@]}"; do
			# shellcheck disable=SC2053
			[[ ${REP[$i]} == ${pats[$i]} ]] || detail="report $((i + 1)) is not ${pats[$i]}: $(show "$out")"
		done
	fi
	if [ -z "$detail" ]; then
		record "$name" "$server" "$fam" PASS "$ms" "$(printf '%s' "${REP[${#REP[@]} - 1]}" | head -n 1)"
	else
		record "$name" "$server" "$fam" FAIL "$ms" "see below" "$detail"
	fi
}

say ""
S=sender@client.test
expect_k pf-v4 postfix "$PF4" "$MSGS/small" v4.test "$S" small@v4.test
expect_k pf-v6 postfix "$PF6" "$MSGS/small" pf6.test "$S" small@pf6.test
expect_k exim-v4 exim "$EX4" "$MSGS/small" ex4.test "$S" small@ex4.test
expect_k exim-v6 exim "$EX6" "$MSGS/small" v6.test "$S" small@v6.test
expect_k pf-v4-2MB postfix "$PF4" "$MSGS/big" v4.test "$S" big@v4.test
expect_k exim-v6-2MB exim "$EX6" "$MSGS/big" v6.test "$S" big@v6.test
# Within one MX, IPv6 addresses first (doc/qmail-remote-resolve.md).
expect_k both-mx exim "$EX6" "$MSGS/small" both.test "$S" small@both.test
expect_k fallback postfix "$PF4" "$MSGS/small" fallback.test "$S" small@fallback.test
expect_k v6-refused postfix "$PF4" "$MSGS/small" v6fail.test "$S" small@v6fail.test
expect_k implicit-mx postfix "$PF4" "$MSGS/small" implicit.test "$S" small@implicit.test
expect_k bounce-from postfix "$PF4" "$MSGS/small" v4.test "" bounce@v4.test
expect_k two-rcpts exim "$EX6" "$MSGS/small" v6.test "$S" m1@v6.test m2@v6.test
expect_fail pf-reject postfix IPv4 "h$PF4 does not like recipient.*" "DGiving up on $PF4*" -- v4.test "$S" nosuch@v4.test
expect_fail exim-reject exim IPv6 "h$EX6 does not like recipient.*" "DGiving up on $EX6*" -- v6.test "$S" nosuch@v6.test
expect_fail mixed-rcpts postfix IPv4 "r*" "h$PF4 does not like recipient.*" "r*" "K$PF4 accepted message.*" -- \
	v4.test "$S" m1@v4.test nosuch@v4.test m2@v4.test
expect_fail nxdomain dns - "DSorry, I couldn't find any host named nosuch.test. (#5.1.2)" -- nosuch.test "$S" user@nosuch.test
expect_fail null-mx dns - "D*" -- nullmx.test "$S" user@nullmx.test
# OpenSMTPD: the same core cases (the small message has the dot-leading
# lines and every 8-bit byte; the big one is 2 MB).
expect_k smtpd-v4 smtpd "$OS4" "$MSGS/small" os4.test "$S" small@os4.test
expect_k smtpd-v6 smtpd "$OS6" "$MSGS/small" os6.test "$S" small@os6.test
expect_k smtpd-v4-2MB smtpd "$OS4" "$MSGS/big" os4.test "$S" big@os4.test
expect_k smtpd-v6-2MB smtpd "$OS6" "$MSGS/big" os6.test "$S" big@os6.test
expect_fail smtpd-reject smtpd IPv4 "h$OS4 does not like recipient.*" "DGiving up on $OS4*" -- os4.test "$S" nosuch@os4.test

# connects SERVER-LOG PATTERN: how many connections the server logged.
connects() { grep -c -- "$2" "$1" 2>/dev/null || true; }

if [ "$SELFTEST" = 0 ]; then
	# smtproutes with address-literal relays (v4, v6, v6 with a port).
	expect_k lit4-route smtpd "$OS4" "$MSGS/small" lit4.test "$S" small@lit4.test
	expect_k lit6-route smtpd "$OS6" "$MSGS/small" lit6.test "$S" small@lit6.test
	expect_k lit6-port-route postfix "$PF6" "$MSGS/small" litport.test "$S" small@litport.test
	# Address-literal host arguments (what qmail-rspawn passes for
	# user@[192.0.2.26]): no DNS, the address itself; the recipient's
	# domain is the literal, which Exim takes as its own (@[]).
	expect_k lit4-host exim "$EX4" "$MSGS/small" "[$EX4]" "$S" "lit@[$EX4]"
	expect_k lit6-host exim "$EX6" "$MSGS/small" "[IPv6:$EX6]" "$S" "lit@[IPv6:$EX6]"

	# The ipme loop rule: control/ipme says Postfix's addresses are this
	# host. Postfix is v4.test's only MX, so the mail would loop: D #5.4.6,
	# and Postfix sees no connection. The same for the literal [PF4]. For
	# both.test Postfix is MX 20 and Exim, MX 10, is better: delivered.
	QHOME=$QI
	n0=$(connects "$T/postfix/log" ': connect from client\.test')
	expect_fail ipme-loop postfix IPv4 "DSorry. Although I'm listed as a best-preference MX or A for that host,*[(]#5.4.6[)]" -- \
		v4.test "$S" small@v4.test
	expect_fail ipme-literal postfix IPv4 "DSorry. Although I'm listed as a best-preference MX or A for that host,*[(]#5.4.6[)]" -- \
		"[$PF4]" "$S" small@v4.test
	n1=$(connects "$T/postfix/log" ': connect from client\.test')
	if [ "$n1" = "$n0" ]; then
		record ipme-loop-conn postfix - PASS - "Postfix logged no connection during the ipme cases"
	else
		record ipme-loop-conn postfix - FAIL - "see below" "Postfix logged $((n1 - n0)) connections from the client during the ipme cases"
	fi
	expect_k ipme-lower exim "$EX6" "$MSGS/small" both.test "$S" ipme@both.test
	QHOME=$QH

	# Routing by sender and the source address (doc/senderroutes.md,
	# doc/outgoingip.md). sroute.test's MX is Postfix; control/senderroutes
	# sends mail from @route.test, and bounces, to Exim instead, and
	# control/outgoingip makes every connection come from the client's
	# second pair of addresses, which the servers' logs must show.
	QSR=$T/qmail-senders
	cp -R "$QH" "$QSR"
	printf '%s\n' "@route.test:ex4.mx.test" "<>:ex4.mx.test" >"$QSR/control/senderroutes"
	printf '%s\n' "$CL4B" "$CL6B" >"$QSR/control/outgoingip"
	chown -R nobody:nogroup "$QSR/queue" "$QSR/run"
	QHOME=$QSR
	expect_k sender-route exim "$EX4" "$MSGS/small" sroute.test someone@route.test sr1@sroute.test
	expect_k sender-route-bounce exim "$EX4" "$MSGS/small" sroute.test "" srb@sroute.test
	expect_k sender-route-other postfix "$PF4" "$MSGS/small" sroute.test "$S" sr2@sroute.test
	expect_k outgoingip-v4 postfix "$PF4" "$MSGS/small" v4.test "$S" src4@v4.test
	expect_k outgoingip-v6 postfix "$PF6" "$MSGS/small" pf6.test "$S" src6@pf6.test
	# Each server logged connections from the second pair only.
	for c in "sender-route-src exim $CL4B $T/exim/log/mainlog SMTP connection from \\[" \
		"outgoingip-v4-src postfix $CL4B $T/postfix/log connect from [^ ]*\\[" \
		"outgoingip-v6-src postfix $CL6B $T/postfix/log connect from [^ ]*\\["; do
		read -r n srv ip log pat <<<"$c"
		if grep -Eq -- "$pat$ip\\]" "$log"; then
			record "$n" "$srv" "$(family "$ip")" PASS - "the server logged a connection from $ip"
		else
			record "$n" "$srv" "$(family "$ip")" FAIL - "see below" "no connection from $ip in $log"
		fi
	done
	# An address that is not the client's: Z at once, and no connection.
	echo 192.0.2.99 >"$QSR/control/outgoingip"
	n0=$(connects "$T/postfix/log" ': connect from ')
	expect_fail outgoingip-absent postfix IPv4 \
		"ZUnable to connect to $PF4 from the address control/outgoingip gives: 192.0.2.99 is not an address of this host. [(]#4.3.0[)]" -- \
		v4.test "$S" src4@v4.test
	n1=$(connects "$T/postfix/log" ': connect from ')
	if [ "$n1" = "$n0" ]; then
		record outgoingip-absent-conn postfix - PASS - "Postfix logged no connection"
	else
		record outgoingip-absent-conn postfix - FAIL - "see below" "Postfix logged $((n1 - n0)) connections"
	fi
	QHOME=$QH

	# A blackholing best MX (OpenSMTPD's BH4/BH6, where nft drops port 25)
	# and tcpto. bhN.test: MX 10 the blackhole, MX 20 Postfix. Each
	# delivery reaches Postfix. The first two wait timeoutconnect (2 s) for
	# the blackhole, and each timeout is recorded; the third skips the
	# address (2 recent timeouts, stock's rule) without sending a packet.
	tcpto_count() { # file record-length address-bytes: the error count byte
		local nb
		nb=$(wc -w <<<"$3")
		od -An -v -tu1 -w"$2" "$1" 2>/dev/null | awk -v a="$3" -v n="$nb" '
			{ k = $1; for (i = 2; i <= n; i++) k = k " " $i; if (k == a) c = $(n + 1) }
			END { print c + 0 }'
	}
	# tcpto_age FILE RECLEN BYTES TIMEOFF TIMELEN SECONDS: set the time of
	# the address's record SECONDS back (little-endian, in place).
	tcpto_age() {
		local file=$1 len=$2 bytes=$3 off=$4 tl=$5 idx t i esc=''
		idx=$(od -An -v -tu1 -w"$len" "$file" | awk -v a="$bytes" -v n="$(wc -w <<<"$bytes")" '
			{ k = $1; for (i = 2; i <= n; i++) k = k " " $i; if (k == a) { print NR - 1; exit } }')
		[ -n "$idx" ] || return 1
		t=$(($(date +%s) - $6))
		for i in $(seq 1 "$tl"); do
			esc="$esc$(printf '\\%03o' $((t & 255)))"
			t=$((t >> 8))
		done
		# shellcheck disable=SC2059 # the format is the octal escapes
		printf "$esc" | dd of="$file" bs=1 seek=$((idx * len + off)) conv=notrunc status=none
	}
	bh_cases() { # v4|v6 blackhole-ip mx-ip domain tcpto-file record-length bytes time-offset time-length
		local fam=$1 bh=$2 mx=$3 dom=$4 file=$5 len=$6 bytes=$7 i p0 p1 n want bad
		for i in 1 2 3; do
			# Stock counts two timeouts only when they are two minutes
			# apart: make the first one three minutes old, as if
			# qmail-send had retried three minutes later.
			[ "$i" = 2 ] && { tcpto_age "$file" "$len" "$bytes" "$8" "$9" 180 || true; }
			p0=$(dropped "$bh")
			expect_k "bh$fam-$i" postfix "$mx" "$MSGS/small" "$dom" "$S" "bh$i@$dom"
			p1=$(dropped "$bh")
			n=$(tcpto_count "$file" "$len" "$bytes")
			want=$i bad=
			[ "$i" = 3 ] && want=2
			[ "$n" = "$want" ] || bad="tcpto count for $bh is $n, want $want;"
			if [ "$i" = 3 ]; then
				[ "$p1" = "$p0" ] || bad="$bad $((p1 - p0)) packets to $bh dropped, want 0 (skipped);"
				[ "$LAST_MS" -lt 1500 ] || bad="$bad took $LAST_MS ms, want < 1500 (skipped);"
			else
				[ "$p1" -gt "$p0" ] || bad="$bad no packet to $bh dropped: not tried?;"
				[ "$LAST_MS" -ge 2000 ] || bad="$bad took $LAST_MS ms, want >= 2000 (timeoutconnect);"
			fi
			if [ -z "$bad" ]; then
				record "bh$fam-$i-tcpto" postfix "IPv${fam#v}" PASS - "${file##*/}: $bh count $n; $((p1 - p0)) SYNs dropped"
			else
				record "bh$fam-$i-tcpto" postfix "IPv${fam#v}" FAIL - "see below" "$bad"
			fi
		done
	}
	QHOME=$QB
	bh_cases v4 "$BH4" "$PF4" bh4.test "$QB/queue/lock/tcpto" 16 "$BH4_BYTES" 8 4
	bh_cases v6 "$BH6" "$PF6" bh6.test "$QB/run/qmail-remote/tcpto6" 28 "$BH6_BYTES" 20 8
	QHOME=$QH

	# 50 MB to Exim, byte-exact (Exim's message_size_limit is 100M).
	expect_k exim-v4-50MB exim "$EX4" "$MSGS/huge" ex4.test "$S" huge@ex4.test
fi

# STARTTLS (default; not with --no-tls): the MTA's own Received line must
# say TLS, and so must our K report; at strictness 2 a certificate that
# does not name the MX is refused, and so is a server without STARTTLS, and
# neither receives anything; at 0 the wrong certificate is used anyway
# (opportunistic, unverified) and the server without STARTTLS gets the
# message in cleartext.
tls_probe() { # case server ip name want(ok|fail) [port]: the stand-in's TLS check
	local out=$T/out.$1 t0 ms addr=$3 got
	case $3 in *:*) addr="[$3]" ;; esac
	t0=$(now_ms)
	in_ns "$NS_CL" timeout 15 openssl s_client -starttls smtp -connect "$addr:${6:-25}" \
		-servername "$4" -verify_hostname "$4" -verify_return_error \
		-CAfile "$TD/ca.pem" </dev/null >"$out" 2>&1 && got=ok || got=fail
	ms=$(($(now_ms) - t0))
	if [ "$got" = "$5" ]; then
		record "$1" "$2" "$(family "$3")" PASS "$ms" "openssl s_client -starttls smtp to $4: $got"
	else
		record "$1" "$2" "$(family "$3")" FAIL "$ms" "see below" "s_client to $4 at $3: $got, want $5: $(grep -E 'Verif|error' "$out" | head -n 3 | tr '\n' '/')"
	fi
}
if [ "$TLS" = 1 ] && [ "$SELFTEST" = 1 ]; then
	tls_probe tls-pf-v4 postfix "$PF4" pf4.mx.test ok
	tls_probe tls-pf-v6 postfix "$PF6" pf6.mx.test ok
	tls_probe tls-exim-v4 exim "$EX4" ex4.mx.test ok
	tls_probe tls-exim-v6 exim "$EX6" ex6.mx.test ok
	tls_probe tls-badname exim "$EX4" badname.mx.test fail
	tls_probe tls-notls postfix "$PF4" pf4.mx.test fail 2525
	# OpenSMTPD 6.8.0p2 with OpenSSL 3 fails every handshake (see 6b).
	tls_probe tls-smtpd-v4 smtpd "$OS4" os4.mx.test fail
	tls_probe tls-smtpd-v6 smtpd "$OS6" os6.mx.test fail
elif [ "$TLS" = 1 ]; then
	QHOME=$T/qmail-tls2
	expect_k tls2-pf-v4 postfix "$PF4" "$MSGS/small" v4.test "$S" tls2@v4.test
	expect_k tls2-exim-v6 exim "$EX6" "$MSGS/small" v6.test "$S" tls2@v6.test
	expect_fail tls2-badname exim IPv4 "Z*[(]TLS[)] Connected to $EX4 *" -- badcert.test "$S" tls2@badcert.test
	expect_fail tls2-notls postfix IPv4 "Z*[(]TLS[)] Connected to $PF4 *STARTTLS*" -- notls.test "$S" tls2@notls.test
	QHOME=$T/qmail-tls0
	expect_k tls0-badname exim "$EX4" "$MSGS/small" badcert.test "$S" tls0@badcert.test
	expect_k tls0-pf-v6 postfix "$PF6" "$MSGS/small" pf6.test "$S" tls0@pf6.test
	TLSWANT=no
	expect_k tls0-notls postfix "$PF4" "$MSGS/small" notls.test "$S" tls0@notls.test
	TLSWANT=
	# The rest of the strictness matrix: each level against each server.
	# OpenSMTPD offers STARTTLS but fails every handshake (see 6b): levels
	# 0 and 1 must fall back to cleartext and deliver (and its log must
	# show the failed handshake), level 2 must refuse it (Z, nothing
	# received).
	hs_fails() { grep -c 'smtp disconnected reason="io-error: .*SSL routines' "$OD/log" || true; }
	smtpd_fallback() { # case
		local n0=$HS
		HS=$(hs_fails)
		if [ "$HS" -gt "$n0" ]; then
			record "$1-handshake" smtpd - PASS - "OpenSMTPD logged $((HS - n0)) failed handshake(s); delivered in cleartext"
		else
			record "$1-handshake" smtpd - FAIL - "see below" "OpenSMTPD logged no failed handshake: was STARTTLS tried?"
		fi
	}
	expect_k tls0-exim-v4 exim "$EX4" "$MSGS/small" ex4.test "$S" tls0@ex4.test
	TLSWANT=no HS=$(hs_fails)
	expect_k tls0-smtpd-v4 smtpd "$OS4" "$MSGS/small" os4.test "$S" tls0@os4.test
	smtpd_fallback tls0-smtpd-v4
	TLSWANT=
	QHOME=$T/qmail-tls1
	expect_k tls1-pf-v4 postfix "$PF4" "$MSGS/small" v4.test "$S" tls1@v4.test
	expect_k tls1-exim-v6 exim "$EX6" "$MSGS/small" v6.test "$S" tls1@v6.test
	TLSWANT=no
	expect_k tls1-smtpd-v6 smtpd "$OS6" "$MSGS/small" os6.test "$S" tls1@os6.test
	smtpd_fallback tls1-smtpd-v6
	TLSWANT=
	QHOME=$T/qmail-tls2
	expect_fail tls2-smtpd-v4 smtpd IPv4 "Z*[(]TLS[)] Connected to $OS4 but the TLS handshake failed*" -- os4.test "$S" tls2@os4.test
	expect_fail tls2-smtpd-v6 smtpd IPv6 "Z*[(]TLS[)] Connected to $OS6 but the TLS handshake failed*" -- os6.test "$S" tls2@os6.test
	# A client certificate, required by Postfix's port 2527
	# (smtpd_tls_req_ccert): presented from control/clientcert and
	# clientkey, it is verified against the test CA, and Postfix's
	# Received line names it; without one, nothing is delivered.
	QHOME=$T/qmail-ccert
	expect_k ccert-pf-v4 postfix "$PF4" "$MSGS/small" ccert.test "$S" ccert@ccert.test
	if grep -q 'Client CN "client.test", Issuer "qmail-remote-go interop CA" (verified OK)' "$T/prefix" 2>/dev/null &&
		grep -q 'postfix/ccert/smtpd.*Trusted TLS connection established from client.test' "$T/postfix/log"; then
		record ccert-pf-v4-log postfix - PASS - "Postfix: client CN client.test verified OK (Received line and log)"
	else
		record ccert-pf-v4-log postfix - FAIL - "see below" "Postfix did not verify the client certificate: $(grep -E 'Client CN|postfix/ccert.*TLS' "$T/prefix" "$T/postfix/log" | head -n 3 | tr '\n' '/')"
	fi
	QHOME=$T/qmail-noccert
	expect_fail noccert-pf-v4 postfix IPv4 "Z*[(]TLS[)] Connected to $PF4 *421 4.7.1 *No client certificate presented*" -- \
		ccert.test "$S" noccert@ccert.test
	QHOME=$QH
	for c in tls2-pf-v4 tls2-exim-v6 tls0-badname tls0-pf-v6 tls0-exim-v4 tls1-pf-v4 tls1-exim-v6 ccert-pf-v4; do
		# The K report's last line: "TLS: VERSION CIPHER, certificate ...".
		tr '\0' '\n' <"$T/out.$c" | grep -q '^TLS: TLSv1\.[23] ' ||
			record "$c-K" - - FAIL - "see below" "the K report does not say TLS: $(show "$T/out.$c")"
	done
	# Only level 2 with a good certificate may say "verified".
	for c in tls2-pf-v4 tls2-exim-v6 ccert-pf-v4; do
		tr '\0' '\n' <"$T/out.$c" | grep -q '^TLS: .*, certificate verified\.$' ||
			record "$c-verified" - - FAIL - "see below" "the K report does not say the certificate was verified: $(show "$T/out.$c")"
	done
	for c in tls0-exim-v4 tls1-pf-v4 tls1-exim-v6; do
		tr '\0' '\n' <"$T/out.$c" | grep -q '^TLS: .*, certificate not verified\.$' ||
			record "$c-verified" - - FAIL - "see below" "levels 0 and 1 do not verify, yet the K report does not say so: $(show "$T/out.$c")"
	done
	for c in tls0-notls tls0-smtpd-v4 tls1-smtpd-v6; do
		case $(tr '\0' '\n' <"$T/out.$c" | grep '^TLS:') in
		'') ;;
		*) record "$c-K" - - FAIL - "see below" "the K report says TLS, but the delivery was in cleartext: $(show "$T/out.$c")" ;;
		esac
	done
	# Level 2 refused them: they must have received nothing at all, not
	# even a recipient (the MTA's log never names the address). Give a
	# delivery that should not have happened time to show up.
	sleep 2
	for c in "tls2-badname exim tls2@badcert.test $T/exim/log/mainlog" "tls2-notls postfix tls2@notls.test $T/postfix/log" \
		"noccert-pf-v4 postfix noccert@ccert.test $T/postfix/log" "tls2-smtpd-v4 smtpd tls2@os4.test $OD/log" \
		"tls2-smtpd-v6 smtpd tls2@os6.test $OD/log"; do
		set -- $c
		if [ -n "$(find "$(box "$3" "$2")/new" -type f 2>/dev/null | head -n 1)" ]; then
			record "$1-box" "$2" - FAIL - "see below" "level 2 refused the server, yet $3 received a message"
		elif grep -qi "$3" "$4"; then
			record "$1-box" "$2" - FAIL - "see below" "the server's log names $3: $(grep -i "$3" "$4" | head -n 2 | tr '\n' '/')"
		else
			record "$1-box" "$2" - PASS - "nothing received for $3"
		fi
	done
fi

# ESMTP: what the MTAs advertise in answer to EHLO. Exim offers AUTH only
# under TLS, so its cleartext EHLO on 587 must not list it.
ehlo_lines() { # ip port: the EHLO reply, one keyword line each
	local l
	exec 3<>"/dev/tcp/$1/$2" || return 1
	IFS= read -r -t 5 l <&3
	printf 'EHLO client.test\r\n' >&3
	while IFS= read -r -t 5 l <&3; do
		l=${l%$'\r'}
		printf '%s\n' "${l:4}"
		[ "${l:3:1}" = - ] || break
	done
	printf 'QUIT\r\n' >&3
}
ehlo_probe() { # case server ip port want... (KEYWORD [PARAM], or !KEYWORD: absent)
	local name=$1 server=$2 ip=$3 port=$4 out=$T/out.$1 t0 ms w bad=
	shift 4
	t0=$(now_ms)
	in_ns "$NS_CL" timeout 10 bash -c "$(declare -f ehlo_lines); ehlo_lines \"\$@\"" _ "$ip" "$port" >"$out" 2>&1
	ms=$(($(now_ms) - t0))
	for w in "$@"; do
		case $w in
		!*) grep -Eqix "${w#!}( .*)?" "$out" && bad="$bad ${w#!}(offered)" ;;
		*) grep -Eqix "$w( .*)?" "$out" || bad="$bad $w(missing)" ;;
		esac
	done
	if [ -z "$bad" ]; then
		record "$name" "$server" "$(family "$ip")" PASS "$ms" "port $port EHLO: $(tr '\n' ' ' <"$out" | cut -c 1-90)"
	else
		record "$name" "$server" "$(family "$ip")" FAIL "$ms" "see below" "port $port EHLO:$bad: $(tr '\n' '|' <"$out")"
	fi
}
ehlo_probe esmtp-postfix postfix "$PF4" 25 PIPELINING SIZE 8BITMIME
ehlo_probe esmtp-exim exim "$EX6" 25 PIPELINING SIZE 8BITMIME '!AUTH'
ehlo_probe esmtp-exim587 exim "$EX4" 587 PIPELINING SIZE 8BITMIME STARTTLS '!AUTH'
ehlo_probe esmtp-pfsize postfix "$PF4" 2526 'SIZE 10240'

# SIZE (RFC 1870; not with --no-size): Postfix's port 2526 service advertises a limit
# smaller than the message. The chain must open no transaction: one D
# report with #5.3.4, and the service's disconnect line (postfix/size)
# must count no MAIL and no DATA.
size_disconnects() { grep -c 'postfix/size/smtpd.*disconnect from' "$T/postfix/log" || true; }
if [ "$SIZE" = 1 ] && [ "$SELFTEST" = 0 ]; then
	n0=$(size_disconnects)
	expect_fail size-limit postfix IPv4 "D*#5.3.4*" -- size.test "$S" small@size.test
	for _ in $(seq 1 50); do
		[ "$(size_disconnects)" -gt "$n0" ] && break
		sleep 0.1
	done
	l=$(grep 'postfix/size/smtpd.*disconnect from' "$T/postfix/log" | tail -n 1)
	if [ "$(size_disconnects)" -le "$n0" ]; then
		record size-limit-log postfix - FAIL - "see below" "no disconnect line from the size service after the case"
	else
		case $l in
		*" data="* | *" mail="*) record size-limit-log postfix - FAIL - "see below" "the server saw a transaction: ${l#*]: }" ;;
		*) record size-limit-log postfix - PASS - "no MAIL, no DATA: ${l#*]: }" ;;
		esac
	fi
fi

# The smarthost (not with --no-tls): Exim on 465 (SMTPS, RFC 8314) and 587
# (STARTTLS) requires AUTH, offered only under TLS. The chain finds it
# through control/smtproutes and its credentials in control/smtpauth
# ($T/qmail-auth), verifies its certificate against the test CA, and must
# deliver byte-exact with "Authenticated as USER." in its K report; a wrong
# password leaves the mail queued (Z with Exim's 535, its code only: a
# reply to AUTH is never quoted, it might echo the password) and delivers
# nothing; no credentials for port 587 get Exim's refusal at RCPT. The
# password must show up in no report, no log and no stage's argv or
# environment (the spy's log).
if [ "$TLS" = 1 ]; then
	QHOME=$QA
	[ "$SELFTEST" = 1 ] || LIBEXEC=$SPY
	AUTHVIA="mx-exim.test $EX6 465 smtps good"
	expect_k smtps-auth exim "$EX4 $EX6" "$MSGS/small" smtps.test "$S" relay@smtps.test
	expect_k smtps-auth-2MB exim "$EX4 $EX6" "$MSGS/big" smtps.test "$S" big@smtps.test
	AUTHVIA="mx-exim.test $EX4 587 starttls good"
	expect_k starttls587-auth exim "$EX4 $EX6" "$MSGS/small" submission.test "$S" relay@submission.test
	AUTHVIA="ex4.mx.test $EX4 465 smtps bad"
	expect_fail wrong-password exim IPv4 "Z*AUTH PLAIN as relayuser failed; check control/smtpauth.*Remote host said: 535 (the rest of this reply is not shown*" -- badpass.test "$S" relay@badpass.test
	AUTHVIA="ex6.mx.test $EX6 587 starttls none"
	expect_fail noauth-587 exim IPv6 "h$EX6 does not like recipient.*authentication required*" "DGiving up on $EX6*" -- \
		noauth.test "$S" relay@noauth.test
	AUTHVIA='' LIBEXEC='' QHOME=$QH
	# What Exim logged for each delivery: the port, TLS, and who
	# authenticated (Exim's <= line: I=[ADDR]:PORT P=esmtpsa X=TLS... A=...).
	for c in "smtps-auth relay@smtps.test 465 plain" "smtps-auth-2MB big@smtps.test 465 plain" "starttls587-auth relay@submission.test 587 login"; do
		set -- $c
		tr '\0' '\n' <"$T/out.$1" | grep -qx "Authenticated as $AUTH_USER\." ||
			record "$1-K" exim - FAIL - "see below" "the K report does not say Authenticated as $AUTH_USER.: $(show "$T/out.$1")"
		tr '\0' '\n' <"$T/out.$1" | grep -q '^TLS: .*, certificate verified\.$' ||
			record "$1-K" exim - FAIL - "see below" "the K report does not say the certificate was verified: $(show "$T/out.$1")"
		l=$(grep " <= .* for $2\$" "$T/exim/log/mainlog" | tail -n 1)
		bad=
		for w in " I=\[[^]]*\]:$3 " " P=esmtpsa " " X=TLS1\.[23]:" " A=$4:$AUTH_USER "; do
			grep -Eq -- "$w" <<<"$l" || bad="$bad '$w'"
		done
		if [ -z "$bad" ]; then
			record "$1-log" exim - PASS - "Exim: $(grep -Eo 'I=[^ ]+|P=[^ ]+|X=TLS[^:]*|A=[^ ]+' <<<"$l" | tr '\n' ' ')"
		else
			record "$1-log" exim - FAIL - "see below" "Exim's <= line lacks$bad: ${l:-(none)}"
		fi
	done
	# Refused: nothing received, and Exim says why.
	for c in "wrong-password relay@badpass.test authenticator failed.*:465: 535 " \
		"noauth-587 relay@noauth.test rejected RCPT <relay@noauth.test>: authentication required"; do
		read -r n r why <<<"$c"
		if [ -n "$(find "$(box "$r" exim)/new" -type f 2>/dev/null | head -n 1)" ]; then
			record "$n-box" exim - FAIL - "see below" "$r received a message"
		elif grep -q " <= .* for $r\$" "$T/exim/log/mainlog"; then
			record "$n-box" exim - FAIL - "see below" "Exim accepted a message for $r"
		elif ! grep -Eq -- "$why" "$T/exim/log/mainlog"; then
			record "$n-box" exim - FAIL - "see below" "no '$why' in Exim's log"
		else
			record "$n-box" exim - PASS - "nothing for $r; Exim: $(grep -Eo -- "$why.*" "$T/exim/log/mainlog" | tail -n 1 | cut -c 1-80)"
		fi
	done
	# The password (and its base64 forms for AUTH PLAIN and LOGIN) in no
	# report, no log, and no stage's argv or environment.
	leaks=
	for secret in "$AUTH_PASS" "$AUTH_BAD" \
		"$(printf '\0%s\0%s' "$AUTH_USER" "$AUTH_PASS" | base64 -w0)" "$(printf '%s' "$AUTH_PASS" | base64 -w0)" \
		"$(printf '\0%s\0%s' "$AUTH_USER" "$AUTH_BAD" | base64 -w0)" "$(printf '%s' "$AUTH_BAD" | base64 -w0)"; do
		for f in "$T"/out.* "$SPYLOG" "$T"/exim/log/* "$T/exim/stderr.log"; do
			[ -f "$f" ] && grep -qF -- "$secret" "$f" && leaks="$leaks ${f#"$T"/}"
		done
	done
	stages=$(grep -c '^== ' "$SPYLOG" || true)
	if [ -n "$leaks" ]; then
		record no-password - - FAIL - "see below" "the password (or its base64) is in:$leaks"
	elif grep -q -- "$AUTH_USER" "$SPYLOG"; then
		# doc/chain.md: QMAILREMOTE_AUTH carries the method only.
		record no-password - - FAIL - "see below" "the user name is in a stage's argv or environment: $(grep -- "$AUTH_USER" "$SPYLOG" | head -n 2 | tr '\n' '|')"
	elif [ "$SELFTEST" = 0 ] && ! grep -q '^QMAILREMOTE_AUTH=smtps$' "$SPYLOG"; then
		record no-password - - FAIL - "see below" "the spy saw no stage with QMAILREMOTE_AUTH=smtps ($stages stage runs)"
	elif [ "$SELFTEST" = 1 ]; then
		record no-password - - PASS - "not in the stand-in's reports or Exim's logs (no stages to spy on)"
	else
		record no-password - - PASS - "not in reports, logs, or the argv/env of $stages stage runs"
	fi
fi

# DANE (RFC 7672; not with --no-dane or --no-tls), against the zone of 4a.
# The chain runs with control/tlspolicy at dane or dane-only and no trust
# anchors (the qmail-dane, qmail-daneonly and qmail-nodnssec homes of 8).
# A K under DANE must be byte-exact, TLS in the MTA's Received line, and
# its report's TLS line must name the record that matched ("certificate
# verified (DANE-EE 3 1 1)."); a host DANE does not apply to gets may
# (TLS, "certificate not verified.", or cleartext after a failed
# handshake). A refusal must leave the mailbox empty and the recipient
# unnamed in the MTA's log; after a failed DANE handshake the MTA must
# have seen no MAIL command, and a host set aside (its TLSA lookup
# failed, or dane-only) no connection at all. Then the resolver itself
# is checked with drill: the AD flag and the rcodes the cases rely on.

# dane_tls CASE SERVER WANT: the K report's TLS line is "TLS: TLSv1.x
# CIPHER, WANT.", or with WANT empty, there is none (cleartext).
dane_tls() {
	local l
	l=$(tr '\0' '\n' <"$T/out.$1" 2>/dev/null | grep '^TLS: ' || true)
	if [ -z "$3" ] && [ -z "$l" ]; then
		record "$1-tls" "$2" - PASS - "no TLS line: cleartext"
	elif [ -n "$3" ] && [[ $l == "TLS: TLSv1."[23]" "*", $3." ]]; then
		record "$1-tls" "$2" - PASS - "${l#TLS: }"
	else
		record "$1-tls" "$2" - FAIL - "see below" "the K report's TLS line is '${l:-(none)}', want '${3:+..., $3.}'"
	fi
}
# What the MTAs log per connection from the client: Postfix "connect
# from" and "disconnect from ... mail=1 ..." (its command counters), Exim
# "SMTP connection from [ADDR]" and "no MAIL in SMTP connection from ...
# C=EHLO,STARTTLS" (log_selector +smtp_connection +smtp_no_mail: the
# commands of a connection that had no MAIL), OpenSMTPD "smtp connected
# address=ADDR" and its failed handshakes.
mta_log() { # server
	case $1 in
	postfix) echo "$T/postfix/log" ;;
	exim) echo "$T/exim/log/mainlog" ;;
	smtpd) echo "$OD/log" ;;
	esac
}
mta_conns() { # server
	case $1 in
	postfix) grep -c 'postfix/smtpd\[[0-9]*\]: connect from client\.test' "$T/postfix/log" || true ;;
	exim) grep -Ec "SMTP connection from \[($CL4|$CL6)\] " "$T/exim/log/mainlog" || true ;;
	smtpd) grep -Ec "smtp connected address=($CL4|$CL6) " "$OD/log" || true ;;
	esac
}
# mta_ends SERVER: how many of the client's connections the MTA logged
# the end of, without MAIL in it (Exim), or at all (Postfix), or with a
# failed handshake (OpenSMTPD).
mta_ends() {
	case $1 in
	postfix) grep -c 'postfix/smtpd\[[0-9]*\]: disconnect from client\.test' "$T/postfix/log" || true ;;
	exim) grep -cF 'no MAIL in SMTP connection from (client.test)' "$T/exim/log/mainlog" || true ;;
	smtpd) grep -c 'smtp disconnected reason="io-error: .*SSL routines' "$OD/log" || true ;;
	esac
}
# dane_mark SERVER: the counts before a refused case (C0, E0).
C0='' E0=''
dane_mark() { C0=$(mta_conns "$1") E0=$(mta_ends "$1"); }
# dane_refused CASE SERVER RCPT WANT: after a refused DANE case: nothing
# for RCPT (mailbox, log), and WANT is "aside" (no connection since
# dane_mark) or "nomail" (one connection, and no MAIL in it: Postfix's
# disconnect counters, Exim's no-MAIL line with C=EHLO,STARTTLS,
# OpenSMTPD's failed handshake).
dane_refused() {
	local name=$1 server=$2 rcpt=$3 want=$4 log n l='' bad=''
	log=$(mta_log "$server")
	if [ "$want" = nomail ]; then
		# The MTA logs the end of the connection after the client left.
		for _ in $(seq 1 50); do
			[ "$(mta_ends "$server")" -gt "$E0" ] && break
			sleep 0.1
		done
		case $server in
		postfix) l=$(grep 'postfix/smtpd\[[0-9]*\]: disconnect from client\.test' "$log" | tail -n 1) ;;
		exim) l=$(grep -F 'no MAIL in SMTP connection from (client.test)' "$log" | tail -n 1) ;;
		smtpd) l=$(grep 'smtp disconnected reason="io-error: .*SSL routines' "$log" | tail -n 1) ;;
		esac
	fi
	n=$(mta_conns "$server")
	if [ -n "$(find "$(box "$rcpt" "$server")/new" -type f 2>/dev/null | head -n 1)" ]; then
		bad="$rcpt received a message"
	elif grep -qiF -- "$rcpt" "$log"; then
		bad="the server's log names $rcpt: $(grep -iF -- "$rcpt" "$log" | head -n 2 | tr '\n' '/')"
	elif [ "$want" = aside ] && [ "$n" != "$C0" ]; then
		bad="the server logged $((n - C0)) connection(s) from the client, want none (set aside)"
	elif [ "$want" = nomail ] && [ "$n" != $((C0 + 1)) ]; then
		bad="the server logged $((n - C0)) connection(s) from the client, want 1"
	elif [ "$want" = nomail ] && [ "$(mta_ends "$server")" != $((E0 + 1)) ]; then
		bad="no end of the connection logged (or too many): ${l:-none}"
	elif [ "$want" = nomail ]; then
		case $server in
		postfix) [[ $l == *" mail="* || $l == *" rcpt="* || $l == *" data="* || $l != *" starttls="* ]] &&
			bad="Postfix's counters: ${l#*]: }" ;;
		exim) [[ $l == *" C=EHLO,STARTTLS" ]] || bad="Exim: $l" ;;
		esac
	fi
	if [ -n "$bad" ]; then
		record "$name-$want" "$server" - FAIL - "see below" "$bad"
	elif [ "$want" = aside ]; then
		record "$name-$want" "$server" - PASS - "nothing for $rcpt, no connection"
	else
		# The log line without its time stamp or session id.
		case $server in
		postfix) l=${l#*]: } ;;
		exim) l=${l#* * } ;;
		smtpd) l=${l#* } ;;
		esac
		record "$name-$want" "$server" - PASS - "nothing for $rcpt; $l"
	fi
}
# dane_dns CASE TYPE NAME WANT...: what unbound tells the client (drill
# -D: the DO bit), each WANT one of an rcode (NOERROR, NXDOMAIN,
# SERVFAIL), ad or !ad (the AD flag), data or nodata (records of TYPE in
# the answer); cd asks with checking disabled (the data behind a bogus
# answer).
dane_dns() {
	local name=$1 type=$2 qname=$3 out=$T/out.$1 t0 ms w rcode flags n bad=
	local opt=()
	shift 3
	case " $* " in *" cd "*) opt=(-o CD) ;; esac
	t0=$(now_ms)
	in_ns "$NS_CL" drill -D "${opt[@]}" "$type" "$qname" "@$DNS4" >"$out" 2>&1 || true
	ms=$(($(now_ms) - t0))
	rcode=$(sed -n 's/.* rcode: \([A-Z]*\),.*/\1/p' "$out")
	flags=$(sed -n 's/^;; flags: \([a-z ]*\);.*/\1/p' "$out")
	n=$(awk -v t="$type" '/^;; ANSWER SECTION/ { a = 1; next } /^;;/ { a = 0 } a && $4 == t { c++ } END { print c + 0 }' "$out")
	for w; do
		case $w in
		cd) ;;
		ad) [[ " $flags " == *" ad "* ]] || bad="$bad no AD flag;" ;;
		!ad) [[ " $flags " != *" ad "* ]] || bad="$bad AD flag set;" ;;
		data) [ "$n" -gt 0 ] || bad="$bad no $type record;" ;;
		nodata) [ "$n" = 0 ] || bad="$bad $n $type records;" ;;
		*) [ "$rcode" = "$w" ] || bad="$bad rcode ${rcode:-none}, want $w;" ;;
		esac
	done
	if [ -z "$bad" ]; then
		record "$name" dns IPv4 PASS "$ms" "$type $qname${opt[*]:+ (CD)}: $rcode, flags $flags, $n $type"
	else
		record "$name" dns IPv4 FAIL "$ms" "see below" "$type $qname:$bad $(grep -E 'rcode|flags' "$out" | tr '\n' ' ')"
	fi
}
# dane_probe CASE SERVER IP NAME RRDATA WANT (ok|fail), --selftest: does
# openssl s_client, given the TLSA record, accept the server?
dane_probe() {
	local out=$T/out.$1 t0 ms addr=$3 got
	case $3 in *:*) addr="[$3]" ;; esac
	t0=$(now_ms)
	in_ns "$NS_CL" timeout 15 openssl s_client -starttls smtp -connect "$addr:25" -servername "$4" \
		-dane_tlsa_domain "$4" -dane_tlsa_rrdata "$5" -dane_ee_no_namechecks -verify_return_error </dev/null >"$out" 2>&1 && got=ok || got=fail
	ms=$(($(now_ms) - t0))
	if [ "$got" = "$6" ]; then
		record "$1" "$2" "$(family "$3")" PASS "$ms" "openssl s_client -dane_tlsa_rrdata '${5:0:16}...' for $4: $got"
	else
		record "$1" "$2" "$(family "$3")" FAIL "$ms" "see below" "s_client with '$5' for $4 at $3: $got, want $6: $(grep -E 'Verif|error' "$out" | head -n 3 | tr '\n' '/')"
	fi
}
if [ "$DANE" = 1 ] && [ "$SELFTEST" = 1 ]; then
	dane_probe dane-tls-ee311-pf postfix "$PF4" ee-pf.mx.dane.test "3 1 1 $PF_311" ok
	dane_probe dane-tls-ee302-pf postfix "$PF6" ee302-pf.mx.dane.test "3 0 2 $PF_302" ok
	dane_probe dane-tls-mismatch-pf postfix "$PF4" bad-pf.mx.dane.test "3 1 1 $STALE_311" fail
	dane_probe dane-tls-ee311-exim exim "$EX6" ee-ex.mx.dane.test "3 1 1 $EX_311" ok
	dane_probe dane-tls-ta211-exim exim "$EX4" ta-ex.mx.dane.test "2 1 1 $CA_311" ok
	dane_probe dane-tls-ta-badname-exim exim "$EX4" tabad-ex.mx.dane.test "2 1 1 $CA_311" fail
	dane_probe dane-tls-mismatch-exim exim "$EX6" bad-ex.mx.dane.test "3 1 1 $CA_311" fail
	dane_probe dane-tls-ee311-smtpd smtpd "$OS4" ee-os.mx.dane.test "3 1 1 $OS_311" fail
elif [ "$DANE" = 1 ]; then
	QHOME=$T/qmail-dane TLSWANT=yes
	# DANE-EE and DANE-TA: verified by the TLSA records alone.
	expect_k dane-ee311-pf postfix "$PF4" "$MSGS/small" ee-pf.dane.test "$S" ee311@ee-pf.dane.test
	dane_tls dane-ee311-pf postfix 'certificate verified (DANE-EE 3 1 1)'
	expect_k dane-ee302-pf postfix "$PF6" "$MSGS/small" ee302-pf.dane.test "$S" ee302@ee302-pf.dane.test
	dane_tls dane-ee302-pf postfix 'certificate verified (DANE-EE 3 0 2)'
	expect_k dane-rollover-pf postfix "$PF4" "$MSGS/small" roll-pf.dane.test "$S" roll@roll-pf.dane.test
	dane_tls dane-rollover-pf postfix 'certificate verified (DANE-EE 3 1 1)'
	expect_k dane-ee311-exim exim "$EX6" "$MSGS/small" ee-ex.dane.test "$S" ee311@ee-ex.dane.test
	dane_tls dane-ee311-exim exim 'certificate verified (DANE-EE 3 1 1)'
	expect_k dane-ta211-exim exim "$EX4" "$MSGS/small" ta-ex.dane.test "$S" ta211@ta-ex.dane.test
	dane_tls dane-ta211-exim exim 'certificate verified (DANE-TA 2 1 1)'
	# The name sent in SNI is the TLSA base domain, the MX host name (RFC
	# 7672 8.1): Exim's <= line (log_selector +tls_sni).
	for c in "dane-ee311-exim ee311@ee-ex.dane.test ee-ex.mx.dane.test" \
		"dane-ta211-exim ta211@ta-ex.dane.test ta-ex.mx.dane.test"; do
		read -r n r h <<<"$c"
		l=$(grep -F " for $r" "$T/exim/log/mainlog" | grep ' <= ' | tail -n 1)
		if [[ $l == *" SNI=$h "* || $l == *" SNI=$h" ]]; then
			record "$n-sni" exim - PASS - "Exim: SNI=$h"
		else
			record "$n-sni" exim - FAIL - "see below" "Exim's <= line for $r has no SNI=$h: ${l:-(none)}"
		fi
	done
	# No DANE for the host: may.
	expect_k dane-nodata-exim exim "$EX4" "$MSGS/small" nodata-ex.dane.test "$S" may@nodata-ex.dane.test
	dane_tls dane-nodata-exim exim 'certificate not verified'
	expect_k dane-insecure-pf postfix "$PF4" "$MSGS/small" insecure.dane.test "$S" may@insecure.dane.test
	dane_tls dane-insecure-pf postfix 'certificate not verified'
	TLSWANT=no HS=$(hs_fails)
	expect_k dane-nxdomain-smtpd smtpd "$OS6" "$MSGS/small" nodata-os.dane.test "$S" may@nodata-os.dane.test
	smtpd_fallback dane-nxdomain-smtpd
	dane_tls dane-nxdomain-smtpd smtpd ''
	TLSWANT=yes
	# DANE applies and the server fails it: Z, no MAIL, nothing received.
	dane_mark postfix
	expect_fail dane-mismatch-pf postfix IPv4 \
		"Z*Connected to $PF4 but the TLS handshake failed: DANE: no TLSA record matches the server's certificate chain*" -- \
		bad-pf.dane.test "$S" bad@bad-pf.dane.test
	dane_refused dane-mismatch-pf postfix bad@bad-pf.dane.test nomail
	dane_mark exim
	expect_fail dane-mismatch-exim exim IPv6 \
		"Z*Connected to $EX6 but the TLS handshake failed: DANE: no TLSA record matches the server's certificate chain*" -- \
		bad-ex.dane.test "$S" bad@bad-ex.dane.test
	dane_refused dane-mismatch-exim exim bad@bad-ex.dane.test nomail
	dane_mark exim
	expect_fail dane-ta-badname-exim exim IPv4 \
		"Z*Connected to $EX4 but the TLS handshake failed: DANE: the certificate matches the DANE-TA record but not the name*" -- \
		tabad-ex.dane.test "$S" tabad@tabad-ex.dane.test
	dane_refused dane-ta-badname-exim exim tabad@tabad-ex.dane.test nomail
	# OpenSMTPD's TLS is broken (6b): its DANE host gets no cleartext.
	dane_mark smtpd
	expect_fail dane-ee311-smtpd smtpd IPv4 "Z*Connected to $OS4 but the TLS handshake failed*" -- \
		ee-os.dane.test "$S" ee311@ee-os.dane.test
	dane_refused dane-ee311-smtpd smtpd ee311@ee-os.dane.test nomail
	# The TLSA lookup fails (SERVFAIL: bogus, or a refusing server): the
	# host is set aside, the next MX used; none left is Z. A bogus MX
	# RRset is the temporary DNS Z. Postfix, the set-aside host of each,
	# sees no connection.
	dane_mark postfix
	expect_k dane-lame-next exim "$EX6" "$MSGS/small" next.dane.test "$S" next@next.dane.test
	dane_tls dane-lame-next exim 'certificate verified (DANE-EE 3 1 1)'
	dane_refused dane-lame-next postfix next@next.dane.test aside
	dane_mark postfix
	expect_fail dane-bogus-tlsa-pf postfix - \
		"ZSorry, no mail exchanger of bogus-pf.dane.test can be used with DANE now. (#4.7.5)*bogus-pf.mx.dane.test: TLSA lookup failed: *" -- \
		bogus-pf.dane.test "$S" bogus@bogus-pf.dane.test
	expect_fail dane-lame-pf postfix - \
		"ZSorry, no mail exchanger of lame-pf.dane.test can be used with DANE now. (#4.7.5)*lame-pf.mx.dane.test: TLSA lookup failed: *" -- \
		lame-pf.dane.test "$S" lame@lame-pf.dane.test
	expect_fail dane-bogus-mx-pf postfix - "ZSorry, I couldn't find any host by that name. (#4.1.2)*" -- \
		badkey.dane.test "$S" bogus@badkey.dane.test
	for c in "dane-bogus-tlsa-pf bogus@bogus-pf.dane.test" "dane-lame-pf lame@lame-pf.dane.test" \
		"dane-bogus-mx-pf bogus@badkey.dane.test"; do
		read -r n r <<<"$c"
		dane_refused "$n" postfix "$r" aside
	done
	# dane-only: DANE or nothing.
	QHOME=$T/qmail-daneonly
	expect_k daneonly-ee311-pf postfix "$PF4" "$MSGS/small" ee-pf.dane.test "$S" only@ee-pf.dane.test
	dane_tls daneonly-ee311-pf postfix 'certificate verified (DANE-EE 3 1 1)'
	dane_mark exim
	expect_fail daneonly-nodata-exim exim - \
		"ZSorry, no mail exchanger of nodata-ex.dane.test can be used with DANE now. (#4.7.5)*nodata-ex.mx.dane.test: no DNSSEC-secure TLSA records, and control/tlspolicy says dane-only*" -- \
		nodata-ex.dane.test "$S" only@nodata-ex.dane.test
	dane_refused daneonly-nodata-exim exim only@nodata-ex.dane.test aside
	dane_mark postfix
	expect_fail daneonly-insecure-pf postfix - \
		"ZSorry, no mail exchanger of insecure.dane.test can be used with DANE now. (#4.7.5)*insecure.dane.test MX: not DNSSEC-secure, and control/tlspolicy says dane-only*" -- \
		insecure.dane.test "$S" only@insecure.dane.test
	dane_refused daneonly-insecure-pf postfix only@insecure.dane.test aside
	# No control/dnssecresolvers: unbound is not on loopback, its AD bit
	# counts for nothing, so nothing is DNSSEC-secure.
	QHOME=$T/qmail-nodnssec
	dane_mark postfix
	expect_fail nodnssec-only-pf postfix - \
		"ZSorry, no mail exchanger of ee-pf.dane.test can be used with DANE now. (#4.7.5)*ee-pf.dane.test MX: not DNSSEC-secure, and control/tlspolicy says dane-only*" -- \
		ee-pf.dane.test "$S" nodnssec@ee-pf.dane.test
	dane_refused nodnssec-only-pf postfix nodnssec@ee-pf.dane.test aside
	expect_k nodnssec-dane-exim exim "$EX6" "$MSGS/small" ee-ex.dane.test "$S" nodnssec@ee-ex.dane.test
	dane_tls nodnssec-dane-exim exim 'certificate not verified'
	QHOME=$QH TLSWANT=
fi
if [ "$DANE" = 1 ]; then
	# The resolver, as the cases above found it (and --selftest's only
	# DANE check besides the TLS probes).
	dane_dns dane-dns-mx MX ee-pf.dane.test NOERROR ad data
	dane_dns dane-dns-tlsa TLSA _25._tcp.ee-pf.mx.dane.test NOERROR ad data
	dane_dns dane-dns-nodata TLSA _25._tcp.nodata-ex.mx.dane.test NOERROR ad nodata
	dane_dns dane-dns-nxdomain TLSA _25._tcp.nodata-os.mx.dane.test NXDOMAIN ad
	dane_dns dane-dns-insecure MX insecure.dane.test NOERROR '!ad' data
	dane_dns dane-dns-insecure-tlsa TLSA _25._tcp.mx.insecure.dane.test NOERROR '!ad' data
	dane_dns dane-dns-bogus-tlsa TLSA _25._tcp.bogus-pf.mx.dane.test SERVFAIL
	dane_dns dane-dns-bogus-tlsa-cd TLSA _25._tcp.bogus-pf.mx.dane.test cd NOERROR data
	dane_dns dane-dns-bogus-mx MX badkey.dane.test SERVFAIL
	dane_dns dane-dns-bogus-mx-cd MX badkey.dane.test cd NOERROR data
	dane_dns dane-dns-lame TLSA _25._tcp.lame-pf.mx.dane.test SERVFAIL
	dane_dns dane-dns-local MX v4.test NOERROR '!ad' data
fi

# MTA-STS (RFC 8461) and TLS reports (RFC 8460; not with --no-sts or
# --no-tls), against the policy servers and domains of 6c, from the
# qmail-sts and qmail-stsoff homes of 8. First the policy servers
# themselves (openssl s_client, both modes): what the chain will be
# served. Then the chain: enforce gives a K only from a named MX whose
# certificate verifies ("certificate verified.", TLS in the MTA's
# Received line), refuses an MX the policy does not name (Z #4.7.5, no
# connection) and one whose certificate does not name it (Z, one
# connection without MAIL, never cleartext), and moves on to the next
# named MX; testing delivers as usual; a policy that cannot be fetched
# (404, or a server certificate that does not verify) changes nothing
# when none is cached; control/mtasts 0 turns it all off (no TXT lookup,
# no log). After each case the home's TLS report log must hold exactly
# the lines expected for the domain (result, MX host, address; p=sts).
# A cached policy is used without fetching it again: the enforce server
# stops serving it, and the next delivery is still verified, with no
# fetch error logged. Last, qmail-remote-tlsrpt turns the log (its
# records moved to yesterday, UTC: only complete days are reported)
# into sts-next.test's report, mailed to its TLSRPT record's address
# through the stand-in qmail-inject (the chain) to Postfix; the stored
# mail must be the one handed over, byte for byte, and its gzipped JSON
# must say what the log said.

# sts_https CASE IP NAME WANT: the policy as openssl s_client fetches
# it from IP with SNI NAME, verified against the test CA: WANT is the
# mode (enforce, testing), 404, or fail (the certificate does not
# verify).
sts_https() {
	local out=$T/out.$1 t0 ms addr=$2 got
	case $2 in *:*) addr="[$2]" ;; esac
	t0=$(now_ms)
	printf 'GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" |
		in_ns "$NS_CL" timeout 10 openssl s_client -quiet -connect "$addr:443" -servername "$3" \
			-verify_hostname "$3" -verify_return_error -CAfile "$TD/ca.pem" >"$out" 2>&1 || true
	ms=$(($(now_ms) - t0))
	# s_client's stderr (the verification) comes first, then the answer.
	got=fail
	case $(grep -m 1 '^HTTP/' "$out") in
	"HTTP/1.0 404 "*) got=404 ;;
	"HTTP/1.0 200 "*) grep -qix 'content-type: text/plain.' "$out" && got=$(sed -n 's/^mode: \([a-z]*\).*/\1/p' "$out") ;;
	esac
	if [ "$got" = "$4" ]; then
		record "$1" sts "$(family "$2")" PASS "$ms" "https://$3/.well-known/mta-sts.txt: $got"
	else
		record "$1" sts "$(family "$2")" FAIL "$ms" "see below" "https://$3/ at $2: got ${got:-200 without a mode}, want $4: $(grep -v '^depth=\|^verify return' "$out" | head -c 300 | tr '\r\n' ' /')"
	fi
}
# sts_results DOMAIN: the lines of qmail-sts's TLS report log for DOMAIN
# so far, each as RESULT[:MX:IP], "(p=...)" added when not p=sts.
STSLOG=$QS/run/qmail-remote/tlsrpt
sts_results() {
	local l r mx ip p
	cat "$STSLOG"/[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9] 2>/dev/null | grep -F "\"d\":\"$1\"" |
		while IFS= read -r l; do
			r=$(sed -n 's/.*"r":"\([^"]*\)".*/\1/p' <<<"$l")
			mx=$(sed -n 's/.*"mx":"\([^"]*\)".*/\1/p' <<<"$l")
			ip=$(sed -n 's/.*"ip":"\([^"]*\)".*/\1/p' <<<"$l")
			p=$(sed -n 's/.*"p":"\([^"]*\)".*/\1/p' <<<"$l")
			printf '%s%s%s ' "$r" "${mx:+:$mx:$ip}" "$([ "$p" = sts ] || echo "(p=$p)")"
		done | sed 's/ $//'
}
# sts_log CASE DOMAIN WANT: the log's lines for DOMAIN are WANT
# (sts_results' form, in order).
sts_log() {
	local got
	got=$(sts_results "$2")
	if [ "$got" = "$3" ]; then
		record "$1-log" - - PASS - "tlsrpt log for $2: ${got:-(nothing)}"
	else
		record "$1-log" - - FAIL - "see below" "tlsrpt log for $2: '${got:-(nothing)}', want '${3:-(nothing)}'"
	fi
}
if [ "$STS" = 1 ]; then
	sts_https sts-https-enforce "$STS6" mta-sts.sts-enforce.test enforce
	sts_https sts-https-testing "$STST4" mta-sts.sts-testing.test testing
	sts_https sts-https-404 "$STSN4" mta-sts.sts-fetchfail.test 404
	sts_https sts-https-webpki "$STS4" mta-sts.sts-webpki.test fail
fi
if [ "$STS" = 1 ] && [ "$SELFTEST" = 0 ]; then
	QHOME=$QS TLSWANT=yes
	# enforce, the MX named and its certificate valid.
	expect_k sts-enforce postfix "$PF4" "$MSGS/small" sts-enforce.test "$S" enforce@sts-enforce.test
	dane_tls sts-enforce postfix 'certificate verified'
	sts_log sts-enforce sts-enforce.test "success:pf4.mx.test:$PF4"
	# enforce, no MX named: Z, no connection.
	dane_mark postfix
	expect_fail sts-nomx postfix - \
		"ZSorry, no mail exchanger of sts-nomx.test matches its MTA-STS policy. (#4.7.5)*pf6.mx.test: not named by the MTA-STS policy*" -- \
		sts-nomx.test "$S" nomx@sts-nomx.test
	dane_refused sts-nomx postfix nomx@sts-nomx.test aside
	sts_log sts-nomx sts-nomx.test ''
	# enforce, the MX's certificate does not name it: Z, no MAIL, no
	# cleartext.
	dane_mark exim
	expect_fail sts-badcert exim IPv4 "Z*[(]TLS[)] Connected to $EX4 but the TLS handshake failed*" -- \
		sts-badcert.test "$S" stsbad@sts-badcert.test
	dane_refused sts-badcert exim stsbad@sts-badcert.test nomail
	sts_log sts-badcert sts-badcert.test "certificate-host-mismatch:badname.mx.test:$EX4"
	# enforce, MX 10 fails as above, MX 20 is used.
	dane_mark exim
	expect_k sts-next postfix "$PF4" "$MSGS/small" sts-next.test "$S" stsnext@sts-next.test
	dane_tls sts-next postfix 'certificate verified'
	dane_refused sts-next exim stsnext@sts-next.test nomail
	sts_log sts-next sts-next.test "certificate-host-mismatch:badname.mx.test:$EX4 success:pf4.mx.test:$PF4"
	# testing: delivered as usual, the mismatch logged.
	expect_k sts-testing exim "$EX4" "$MSGS/small" sts-testing.test "$S" ststest@sts-testing.test
	dane_tls sts-testing exim 'certificate not verified'
	sts_log sts-testing sts-testing.test "certificate-host-mismatch:badname.mx.test:$EX4"
	# No policy to be had (nothing cached): delivered as usual, the
	# failed fetch logged.
	expect_k sts-fetchfail postfix "$PF4" "$MSGS/small" sts-fetchfail.test "$S" fetchfail@sts-fetchfail.test
	dane_tls sts-fetchfail postfix 'certificate not verified'
	sts_log sts-fetchfail sts-fetchfail.test sts-policy-fetch-error
	expect_k sts-webpki postfix "$PF4" "$MSGS/small" sts-webpki.test "$S" webpki@sts-webpki.test
	dane_tls sts-webpki postfix 'certificate not verified'
	sts_log sts-webpki sts-webpki.test sts-webpki-invalid
	# control/mtasts 0: sts-nomx.test delivered (to Postfix over IPv6);
	# no _mta-sts query, nothing logged or cached.
	QHOME=$T/qmail-stsoff
	q0=$(grep -c '_mta-sts\.sts-nomx\.test\. TXT IN' "$T/dns/unbound.log" || true)
	expect_k sts-off postfix "$PF6" "$MSGS/small" sts-nomx.test "$S" off@sts-nomx.test
	dane_tls sts-off postfix 'certificate not verified'
	q1=$(grep -c '_mta-sts\.sts-nomx\.test\. TXT IN' "$T/dns/unbound.log" || true)
	if [ "$q1" != "$q0" ]; then
		record sts-off-nosts - - FAIL - "see below" "$((q1 - q0)) _mta-sts.sts-nomx.test TXT queries with control/mtasts 0"
	elif [ -e "$T/qmail-stsoff/run/qmail-remote/tlsrpt" ] || [ -e "$T/qmail-stsoff/run/qmail-remote/mta-sts" ]; then
		record sts-off-nosts - - FAIL - "see below" "a TLS report log or a policy cache with control/mtasts 0: $(find "$T/qmail-stsoff/run/qmail-remote" | tr '\n' ' ')"
	else
		record sts-off-nosts - - PASS - "no _mta-sts query, nothing logged or cached"
	fi
	# The cached policy: the enforce server no longer serves it (it
	# would answer 200 with an error text, an invalid policy, which
	# would be logged), the TXT id is the same: no fetch, still
	# enforced and verified.
	QHOME=$QS
	cache=$QS/run/qmail-remote/mta-sts/sts-enforce.test
	c0=$(cksum 2>/dev/null <"$cache" || true)
	# s_server logs each request it answers (FILE:PATH, on stderr).
	g0=$(cat "$SD/enforce4.log" "$SD/enforce6.log" | grep -c '^FILE:' || true)
	mv "$SD/enforce/.well-known/mta-sts.txt" "$SD/enforce/.well-known/mta-sts.txt.gone"
	expect_k sts-cached postfix "$PF4" "$MSGS/small" sts-enforce.test "$S" cached@sts-enforce.test
	dane_tls sts-cached postfix 'certificate verified'
	sts_log sts-cached sts-enforce.test "success:pf4.mx.test:$PF4 success:pf4.mx.test:$PF4"
	if [ -z "$c0" ]; then
		record sts-cached-cache - - FAIL - "see below" "no cached policy $cache after sts-enforce"
	elif [ "$(cksum <"$cache")" != "$c0" ]; then
		record sts-cached-cache - - FAIL - "see below" "the cached policy changed: $(tr '\n' '/' <"$cache")"
	elif g1=$(cat "$SD/enforce4.log" "$SD/enforce6.log" | grep -c '^FILE:' || true) && [ "$g1" != "$g0" ]; then
		record sts-cached-cache - - FAIL - "see below" "the policy was fetched again: $((g1 - g0)) request(s) to the enforce server"
	else
		record sts-cached-cache - - PASS - "the cached policy was used, unchanged, no request to the policy server"
	fi
	TLSWANT=

	# The TLS report. Its records all move to yesterday (UTC): the
	# reporter aggregates a day's records by their own time.
	yd=$(date -u -d yesterday +%Y-%m-%d)
	y=${yd//-/}
	want_ok=0 want_fail=0
	for w in $(sts_results sts-next.test); do
		case $w in
		success*) want_ok=$((want_ok + 1)) ;;
		*) want_fail=$((want_fail + 1)) ;;
		esac
	done
	mkdir -p "$STSLOG"
	cat "$STSLOG"/[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9] 2>/dev/null |
		sed -E "s/^\\{\"t\":\"[0-9]{4}-[0-9]{2}-[0-9]{2}T/{\"t\":\"${yd}T/" >"$T/tlsrpt.day"
	rm -f "$STSLOG"/[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]
	mv "$T/tlsrpt.day" "$STSLOG/$y"
	chown nobody:nogroup "$STSLOG" "$STSLOG/$y"
	t0=$(now_ms)
	rc=0
	in_ns "$NS_CL" timeout 120 setpriv --reuid=nobody --regid=nogroup --clear-groups \
		env -i PATH=/usr/bin:/bin QMAILREMOTE_QMAILHOME="$QS" QMAILREMOTE_LIBEXECDIR="$BIN" \
		QMAILREMOTE_REALEXEC="$REALEXEC" "$BIN/qmail-remote-tlsrpt" -v \
		>"$T/out.tlsrpt-run" 2>"$T/out.tlsrpt-run.err" || rc=$?
	ms=$(($(now_ms) - t0))
	if [ "$rc" != 0 ]; then
		record tlsrpt-run - - FAIL "$ms" "see below" "qmail-remote-tlsrpt -v exited $rc: $(tr '\n' '/' <"$T/out.tlsrpt-run.err") $(tr '\n' '/' <"$T/out.tlsrpt-run")"
	elif ! grep -qx "$y sts-next.test: sent to mailto:tlsrpt@v4.test" "$T/out.tlsrpt-run"; then
		record tlsrpt-run - - FAIL "$ms" "see below" "no '$y sts-next.test: sent to mailto:tlsrpt@v4.test': $(tr '\n' '/' <"$T/out.tlsrpt-run")"
	elif [ -e "$STSLOG/$y" ] || [ -e "$STSLOG/$y.sent" ]; then
		record tlsrpt-run - - FAIL "$ms" "see below" "the reported day is still in the log: $(find "$STSLOG" -mindepth 1 -printf '%f ')"
	elif [ "$(cat "$INJ/args" 2>/dev/null)" != "-f postmaster@client.test tlsrpt@v4.test" ]; then
		record tlsrpt-run - - FAIL "$ms" "see below" "qmail-inject ran with: $(tr '\n' '|' <"$INJ/args" 2>/dev/null)"
	else
		record tlsrpt-run - - PASS "$ms" "$(grep -c ': sent to ' "$T/out.tlsrpt-run") sent, day $y deleted; $(tr '\0' '\n' <"$INJ/out.1" | grep '^K' | head -n 1)"
	fi
	# The mail Postfix stored: byte for byte what qmail-inject was given.
	b=$(box tlsrpt@v4.test postfix)
	wait_box "$b"
	if ! stored_ok "$b" "$INJ/msg.1" postmaster@client.test tlsrpt@v4.test; then
		record tlsrpt-mail postfix - FAIL - "see below" "$WHY"
	elif ! grep -qx 'TLS-Report-Domain: sts-next.test' "$INJ/msg.1" ||
		! grep -q '^Content-Type: multipart/report; report-type="tlsrpt";' "$INJ/msg.1"; then
		record tlsrpt-mail postfix - FAIL - "see below" "not a TLS report for sts-next.test: $(head -n 12 "$INJ/msg.1" | tr '\n' '/')"
	else
		record tlsrpt-mail postfix - PASS - "stored byte-exact: $(grep -m 1 '^Subject: ' "$INJ/msg.1")"
	fi
	# Its attachment: gzipped JSON (RFC 8460 4.4).
	f=$(find "$b/new" -type f 2>/dev/null | head -n 1)
	awk '/^Content-Type: application\/tlsrpt\+gzip/ { p = 1; next }
		p == 1 && /^$/ { p = 2; next }
		p == 2 && /^--/ { exit }
		p == 2 { print }' "${f:-/dev/null}" | base64 -d 2>/dev/null | gunzip 2>/dev/null >"$T/tlsrpt.json" || true
	js=$(tr -d ' \t\n' <"$T/tlsrpt.json")
	bad=
	for w in '"organization-name":"client.test"' "\"start-datetime\":\"${yd}T00:00:00Z\"" \
		"\"end-datetime\":\"${yd}T23:59:59Z\"" '"policy-type":"sts"' '"policy-domain":"sts-next.test"' \
		"\"total-successful-session-count\":$want_ok" "\"total-failure-session-count\":$want_fail" \
		'"result-type":"certificate-host-mismatch"' "\"sending-mta-ip\":\"$CL4\"" \
		'"receiving-mx-hostname":"badname.mx.test"' "\"receiving-ip\":\"$EX4\"" '"failed-session-count":1'; do
		[[ $js == *"$w"* ]] || bad="$bad $w;"
	done
	if [ ! -s "$T/tlsrpt.json" ]; then
		record tlsrpt-json - - FAIL - "see below" "no application/tlsrpt+gzip attachment that decodes in ${f:-(no mail)}"
	elif command -v jq >/dev/null 2>&1 && ! jq -e . "$T/tlsrpt.json" >/dev/null 2>&1; then
		record tlsrpt-json - - FAIL - "see below" "jq: not JSON: $(head -c 200 "$T/tlsrpt.json")"
	elif [ -n "$bad" ]; then
		record tlsrpt-json - - FAIL - "see below" "the report lacks$bad: $(head -c 600 "$T/tlsrpt.json")"
	else
		record tlsrpt-json - - PASS - "sts-next.test, sts: $want_ok successful, $want_fail failed (certificate-host-mismatch, badname.mx.test $EX4)"
	fi
	QHOME=$QH
fi

# The resolver over IPv6: the client's resolv.conf names only the IPv6
# address of the DNS server; unbound's query log must show the MX query
# coming from the client's IPv6 address.
printf 'nameserver %s\noptions timeout:2 attempts:2\n' "$DNS6" >"/etc/netns/$NS_CL/resolv.conf"
expect_k resolv-v6 exim "$EX6" "$MSGS/small" v6.test "$S" dns6@v6.test
printf 'nameserver %s\noptions timeout:2 attempts:2\n' "$DNS4" >"/etc/netns/$NS_CL/resolv.conf"
if ! grep -q "info: $CL6 v6.test. MX IN" "$T/dns/unbound.log"; then
	record resolv-v6-q dns IPv6 FAIL - "see below" "no MX query from $CL6 in unbound's log"
fi

# The checker itself must be able to fail: feed it a stored message with
# one byte changed, with a stuffed dot left in, with a header the MTAs do
# not add, and twice; each must be refused, and the pristine copy taken.
checker() {
	local src c d bad=
	src=$(find "$(box small@v4.test postfix)/new" -type f | head -n 1)
	if [ -z "$src" ]; then
		record checker - - FAIL - "see below" "no stored message to work on"
		return 0
	fi
	for c in pristine flip dot header twice; do
		d=$T/checker/$c/new
		mkdir -p "$d"
		case $c in
		pristine) cp "$src" "$d/1" ;;
		flip) sed 's/^line 151 of/line 151 0f/' "$src" >"$d/1" ;;
		dot) sed 's/^\.line 10 /..line 10 /' "$src" >"$d/1" ;;
		header) { echo "X-Scanned: yes"; cat "$src"; } >"$d/1" ;;
		twice) cp "$src" "$d/1" && cp "$src" "$d/2" ;;
		esac
		cmp -s "$src" "$d/1" && [ "$c" != pristine ] && [ "$c" != twice ] && bad="$bad $c(mutation did nothing)"
		if stored_ok "$T/checker/$c" "$MSGS/small" "$S" small@v4.test; then
			[ "$c" = pristine ] || bad="$bad $c(accepted)"
		else
			[ "$c" = pristine ] && bad="$bad pristine(refused: $WHY)"
		fi
	done
	if [ -z "$bad" ]; then
		record checker - - PASS - "refuses a changed byte, a stuffed dot, an added header, a duplicate"
	else
		record checker - - FAIL - "see below" "$bad"
	fi
}
checker

say ""
say "case         server   family result   ms  report"
for l in "${RESULTS[@]}"; do say "$l"; done

# The interop table: scenario x server. A cell names the cases behind it;
# it says FAIL if any of them (or any of their sub-checks, CASE-x) failed,
# "-" if none ran, else PASS and each case's qmail-remote wall time in ms.
cell() { # case...
	local c k r=PASS ms='' ran=0
	for c in "$@"; do
		[ -n "${RES_OF[$c]:-}" ] || continue
		ran=1
		for k in "${!RES_OF[@]}"; do
			case $k in "$c" | "$c"-*) [ "${RES_OF[$k]}" = PASS ] || r=FAIL ;; esac
		done
		[ -n "${MS_OF[$c]:-}" ] && ms="$ms${ms:+/}${MS_OF[$c]}"
	done
	if [ "$ran" = 0 ]; then
		echo -
	else
		echo "$r${ms:+ $ms}"
	fi
}
TABLE=(
	"MX, IPv4|pf-v4|exim-v4|smtpd-v4|"
	"MX, IPv6-only MX host|pf-v6|exim-v6|smtpd-v6|"
	"2 MB body, byte-exact|pf-v4-2MB|exim-v6-2MB|smtpd-v4-2MB smtpd-v6-2MB|"
	"50 MB body, byte-exact|-|exim-v4-50MB|-|"
	"RCPT refused: h, D|pf-reject|exim-reject|smtpd-reject|"
	"r h r K, one transaction|mixed-rcpts|two-rcpts|-|"
	"empty envelope sender|bounce-from|-|-|"
	"MX preference order|-|both-mx|-|"
	"fallback: MX 10 refuses|fallback|-|-|"
	"fallback: MX's IPv6 refuses|v6-refused|-|-|"
	"fallback: MX 10 blackholed, tcpto v4|bhv4-1 bhv4-2 bhv4-3|-|-|"
	"fallback: MX 10 blackholed, tcpto6|bhv6-1 bhv6-2 bhv6-3|-|-|"
	"implicit MX (A only)|implicit-mx|-|-|"
	"NXDOMAIN, null MX: D, no connection|-|-|-|nxdomain null-mx"
	"resolver over IPv6|-|resolv-v6|-|"
	"smtproutes relay:port|tls0-notls size-limit|smtps-auth starttls587-auth|-|"
	"smtproutes [IPv4] relay|-|-|lit4-route|"
	"smtproutes [IPv6] relay|lit6-port-route|-|lit6-route|"
	"host [192.0.2.26], [IPv6:2001:db8::26]|-|lit4-host lit6-host|-|"
	"ipme loop rule: D #5.4.6, no connect|ipme-loop ipme-literal|-|-|"
	"ipme: better MX still used|-|ipme-lower|-|"
	"senderroutes: by sender, bounces by <>|sender-route-other|sender-route sender-route-bounce|-|"
	"outgoingip: v4 and v6 source; not local: Z|outgoingip-v4 outgoingip-v6 outgoingip-absent|-|-|"
	"tlsstrictness 0|tls0-pf-v6|tls0-exim-v4 tls0-badname|tls0-smtpd-v4|"
	"tlsstrictness 1|tls1-pf-v4|tls1-exim-v6|tls1-smtpd-v6|"
	"tlsstrictness 2|tls2-pf-v4|tls2-exim-v6|tls2-smtpd-v4 tls2-smtpd-v6|"
	"level 2 refuses: no STARTTLS, bad name|tls2-notls|tls2-badname|-|"
	"level 0 without STARTTLS: cleartext|tls0-notls|-|-|"
	"client certificate required|ccert-pf-v4 noccert-pf-v4|-|-|"
	"SIZE limit: D #5.3.4, no MAIL|size-limit|-|-|"
	"AUTH: SMTPS 465, STARTTLS 587|-|smtps-auth smtps-auth-2MB starttls587-auth|-|"
	"AUTH refused: wrong password, none|-|wrong-password noauth-587|-|"
	"DANE-EE 3 1 1: K, verified by TLSA|dane-ee311-pf|dane-ee311-exim|-|"
	"DANE-EE 3 0 2; rollover (stale + right)|dane-ee302-pf dane-rollover-pf|-|-|"
	"DANE-TA 2 1 1 (CA sent in the chain)|-|dane-ta211-exim|-|"
	"DANE mismatch, DANE-TA name: Z, no MAIL|dane-mismatch-pf|dane-mismatch-exim dane-ta-badname-exim|-|"
	"DANE host, broken TLS: Z, no cleartext|-|-|dane-ee311-smtpd|"
	"DANE, no TLSA (secure denial): may|-|dane-nodata-exim|dane-nxdomain-smtpd|"
	"DANE, insecure delegation: may|dane-insecure-pf|-|-|"
	"DANE, TLSA SERVFAIL: next MX|-|dane-lame-next|-|"
	"DANE, TLSA bogus/SERVFAIL, bogus MX: Z|dane-bogus-tlsa-pf dane-lame-pf dane-bogus-mx-pf|-|-|"
	"dane-only: DANE K; no DANE: Z|daneonly-ee311-pf daneonly-insecure-pf|daneonly-nodata-exim|-|"
	"no dnssecresolvers: DANE never applies|nodnssec-only-pf|nodnssec-dane-exim|-|"
	"MTA-STS enforce: verified K; cached|sts-enforce sts-cached|-|-|"
	"MTA-STS enforce: no MX named: Z|sts-nomx|-|-|"
	"MTA-STS enforce: bad certificate: Z|-|sts-badcert|-|"
	"MTA-STS enforce: MX 10 bad, MX 20 K|sts-next|-|-|"
	"MTA-STS testing: bad certificate, K|-|sts-testing|-|"
	"MTA-STS fetch fails (404, bad cert): K|sts-fetchfail sts-webpki|-|-|"
	"control/mtasts 0: MTA-STS off|sts-off|-|-|"
	"TLS report mailed, parsed (RFC 8460)|tlsrpt-mail|-|-|tlsrpt-run tlsrpt-json"
	"MTA-STS policy servers (openssl)|-|-|-|sts-https-enforce sts-https-testing sts-https-404 sts-https-webpki"
	"DNSSEC answers the cases rely on (drill)|-|-|-|dane-dns-mx dane-dns-tlsa dane-dns-nodata dane-dns-nxdomain dane-dns-insecure dane-dns-bogus-tlsa dane-dns-bogus-mx dane-dns-lame dane-dns-local"
	"DANE TLSA (openssl, --selftest)|dane-tls-ee311-pf dane-tls-ee302-pf dane-tls-mismatch-pf|dane-tls-ee311-exim dane-tls-ta211-exim dane-tls-ta-badname-exim dane-tls-mismatch-exim|dane-tls-ee311-smtpd|"
	"STARTTLS (openssl, --selftest)|tls-pf-v4 tls-pf-v6 tls-notls|tls-exim-v4 tls-exim-v6 tls-badname|tls-smtpd-v4 tls-smtpd-v6|"
)
say ""
say "interop table (cell: result and qmail-remote wall time per case, ms)"
printf '%-40s %-22s %-22s %-22s %s\n' scenario Postfix Exim OpenSMTPD "no MTA"
for row in "${TABLE[@]}"; do
	IFS='|' read -r name a b c d <<<"$row"
	# shellcheck disable=SC2086 # the cells list case names
	set -- "$(cell $a)" "$(cell $b)" "$(cell $c)" "$(cell $d)"
	# A row none of whose cases ran in this mode is left out.
	[ "$*" = "- - - -" ] && continue
	printf '%-40s %-22s %-22s %-22s %s\n' "$name" "$@"
done
say "(OpenSMTPD 6.8.0p2 fails every TLS handshake under OpenSSL 3: its tlsstrictness cells"
say " are the cleartext fallback at 0 and 1 and the refusal at 2, its DANE cells the refusal"
say " of a host with TLSA records and the fallback of one without; see doc/interop.md)"
say ""
[ -z "$DANE_SKIP" ] || say "SKIP (the DANE cases): $DANE_SKIP"
if [ "$FAILS" = 0 ]; then
	say "interop: ${#RESULTS[@]} passed, 0 failed"
else
	say "interop: $((${#RESULTS[@]} - FAILS)) passed, $FAILS failed (logs: $T/postfix/log $T/exim/log/mainlog; rerun with --keep)"
	exit 1
fi
