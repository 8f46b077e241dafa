# The Bastion configuration of the TLS-inspection benchmarks (bench/tls.sh, bench/tools/tls-ab.sh), sourced by both:
#   bastion_tls_yaml PORT CA_DIR ORIGIN_CA ACCESS_LOG >FILE
# A 9-rule policy that every request inside a tunnel is judged by, the access log on unless ACCESS_LOG is "off".
bastion_tls_yaml() {
  cat <<YAML
logging: { access: $4 }
lists:
  blocked: [ads.example, tracker.example, malware.example]
listeners:
  - name: web
    type: http-proxy
    listen: 127.0.0.1:$1
    policy: out
    limits: { max_connections: 20000, max_request_body: 2GiB }
    tls_inspection: { ca: $2, upstream_ca: $3, skip: [bank.example] }
policies:
  out:
    default: deny
    rules:
      - deny: { host: "@blocked" }
      - deny: { path: "/admin/**" }
      - deny: { path: "~\\\\.(exe|msi)$" }
      - deny: { header: { User-Agent: "~(?i)sqlmap" } }
      - deny: { method: TRACE }
      - deny: { content_type: "application/x-msdownload" }
      - deny: { sni: evil.example }
      - allow: { method: CONNECT, port: [443, 1024-65535] }
      - allow: { source: 127.0.0.0/8, method: [GET, HEAD, POST] }
YAML
}
