#!/bin/sh
# The proxy benchmark's "single-user server", started by Orrery's local backend: nginx serving
# the benchmark's files (DIR/user/<name>/tiny and .../big) on the port JUPYTERHUB_SERVICE_URL
# names. It answers the hub's readiness check (<prefix>api) with 404, which counts as up.
#   backend.sh DIR
set -eu
dir=$1
port=$(printf '%s' "$JUPYTERHUB_SERVICE_URL" | sed -E 's#^[a-z]+://[^:/]+:([0-9]+).*#\1#')
run="$dir/nginx-$port"
mkdir -p "$run"
cat >"$run/nginx.conf" <<CONF
worker_processes 1;
pid $run/nginx.pid;
error_log $run/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $run/body;
    proxy_temp_path $run/proxy;
    fastcgi_temp_path $run/fastcgi;
    uwsgi_temp_path $run/uwsgi;
    scgi_temp_path $run/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port;
        root $dir/www;
        default_type application/octet-stream;
    }
}
CONF
exec nginx -c "$run/nginx.conf" -g 'daemon off;'
