#!/usr/bin/env bash
# Writes a local-only Janus configuration into the directory $1: the VideoRoom plugin and the
# WebSocket transport on 127.0.0.1:${2:-8188}, nothing else. No STUN, no NAT mapping, IPv4
# only. ICE candidates are gathered on the address $3 only (compare-janus.sh passes a veth
# address inside its private network namespace): libnice skips loopback interfaces, so
# 127.0.0.1 cannot be used. Run Janus with: janus -F "$1" -C "$1/janus.jcfg"
set -euo pipefail
dir=$1
port=${2:-8188}
ice_ip=${3:?usage: janus-config.sh DIR PORT ICE_IP}
lib=""
for d in /usr/lib/*/janus /usr/lib/janus /usr/local/lib/janus /opt/janus/lib/janus; do
    if [ -d "$d/plugins" ]; then lib=$d; break; fi
done
[ -n "$lib" ] || { echo "janus-config.sh: no janus plugins folder found" >&2; exit 1; }
mkdir -p "$dir"
cat > "$dir/janus.jcfg" <<CFG
general: {
	configs_folder = "$dir"
	plugins_folder = "$lib/plugins"
	transports_folder = "$lib/transports"
	events_folder = "$lib/events"
	loggers_folder = "$lib/loggers"
	debug_level = 3
	session_timeout = 60
	# Janus's default (0) runs one thread per PeerConnection; pinned to one core, hundreds
	# of threads only add context switches. A single static event loop is Janus's own
	# recommendation for many handles and its best setting for one core.
	event_loops = 1
}
certificates: {
}
media: {
	ipv6 = false
	rtp_port_range = "40000-49999"
}
nat: {
	# This host only: candidates on one local address, no STUN/TURN, no 1:1 NAT, full ICE
	# (not lite) and half trickle, so Janus's candidates are in its SDP.
	nice_debug = false
	full_trickle = false
	ice_lite = false
	ice_tcp = false
	ice_enforce_list = "$ice_ip"
}
plugins: {
	disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so"
}
transports: {
	disable = "libjanus_http.so,libjanus_pfunix.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_rabbitmq.so"
}
loggers: {
	disable = "libjanus_jsonlog.so"
}
events: {
	broadcast = false
	disable = "libjanus_gelfevh.so,libjanus_mqttevh.so,libjanus_nanomsgevh.so,libjanus_rabbitmqevh.so,libjanus_sampleevh.so,libjanus_wsevh.so"
}
CFG
cat > "$dir/janus.plugin.videoroom.jcfg" <<CFG
# No static rooms: veche-load creates its own (one per run, up to the publishers it needs).
general: {
}
CFG
cat > "$dir/janus.transport.websockets.jcfg" <<CFG
general: {
	json = "compact"
	ws = true
	ws_port = $port
	ws_ip = "127.0.0.1"
	wss = false
}
admin: {
	admin_ws = false
	admin_wss = false
}
CFG
