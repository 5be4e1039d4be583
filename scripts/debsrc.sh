# Sourced by samba/build.sh and ganesha/build.sh: a private apt state under "$1" with deb-src lines
# for every archive the system's own sources name (deb822 or one-line format), updated; sets
# $apt_opts for `apt-get $apt_opts source --download-only PKG=VERSION`. Nothing of the system's
# apt state is changed. Needs a `die` function.
debsrc_prepare() {
	_c=$1
	mkdir -p "$_c/apt/lists/partial" "$_c/apt/cache/archives/partial"
	: > "$_c/apt/sources.list"
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk 'BEGIN{RS=""; FS="\n"} {
			uris=""; suites=""; comps=""; types="";
			for (i=1;i<=NF;i++) {
				if ($i ~ /^URIs:/) { uris=$i; sub(/^URIs:[ \t]*/,"",uris) }
				if ($i ~ /^Suites:/) { suites=$i; sub(/^Suites:[ \t]*/,"",suites) }
				if ($i ~ /^Components:/) { comps=$i; sub(/^Components:[ \t]*/,"",comps) }
				if ($i ~ /^Types:/) { types=$i }
			}
			if (types !~ /deb/ || uris=="" || suites=="") next;
			nu=split(uris,U,/[ \t]+/); ns=split(suites,S,/[ \t]+/);
			for (u=1;u<=nu;u++) for (s=1;s<=ns;s++) print "deb-src " U[u] " " S[s] " " comps
		}' "$f" >> "$_c/apt/sources.list"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		sed -n 's/^[ \t]*deb[ \t]\+\(\[[^]]*\][ \t]\+\)\?/deb-src /p' "$f" >> "$_c/apt/sources.list"
	done
	if [ ! -s "$_c/apt/sources.list" ]; then
		codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
		echo "deb-src http://deb.debian.org/debian $codename main" > "$_c/apt/sources.list"
	fi
	apt_opts="-o Dir::Etc::sourcelist=$_c/apt/sources.list -o Dir::Etc::sourceparts=-
		-o Dir::State::Lists=$_c/apt/lists -o Dir::Cache=$_c/apt/cache
		-o APT::Sandbox::User=root -o Debug::NoLocking=1"
	# shellcheck disable=SC2086
	apt-get -q $apt_opts update >"$_c/apt-update.log" 2>&1 || { cat "$_c/apt-update.log" >&2; die "apt-get update (private lists) failed"; }
}
