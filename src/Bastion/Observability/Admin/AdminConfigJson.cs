using System.Text.Json;
using Bastion.Gateway;
using Bastion.Configuration;
using Bastion.Hosting;

namespace Bastion.Observability.Admin;

/// <summary>
/// /api/config: the configuration in force, shaped like the YAML it came from. Secrets never appear: files that
/// hold them (admin token, htpasswd, TLS keys) are named by path only, long list files by their entry count; URLs
/// lose their `user:password@` and rules on credential headers their values.
/// </summary>
public static class AdminConfigJson
{
    public static void Write(Utf8JsonWriter w, Runtime rt)
    {
        var c = rt.Config;
        w.WriteStartObject();
        w.WriteString("path", c.Path is null ? null : Path.GetFullPath(c.Path));
        w.WriteNumber("generation", rt.Generation);
        w.WriteString("loaded_at", rt.LoadedAt.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'"));

        if (c.Admin is { } a)
        {
            w.WriteStartObject("admin");
            w.WriteString("listen", a.Listen.ToString());
            w.WriteString("token_file", a.TokenFile is null ? null : c.Resolve(a.TokenFile));
            w.WriteEndObject();
        }
        w.WriteStartObject("logging");
        w.WriteString("access", c.Logging.Access);
        w.WriteEndObject();
        if (c.Identity is { } id)
        {
            w.WriteStartObject("identity");
            w.WriteString("users", id.UsersFile is null ? null : c.Resolve(id.UsersFile));
            w.WriteNumber("user_count", rt.Identity.UserCount);
            w.WriteStartObject("groups");
            foreach (var (g, members) in id.Groups.OrderBy(g => g.Key, StringComparer.Ordinal)) Strings(w, g, members);
            w.WriteEndObject();
            w.WriteEndObject();
        }

        w.WriteStartObject("lists");
        foreach (var (name, l) in c.Lists.OrderBy(l => l.Key, StringComparer.Ordinal))
        {
            w.WriteStartObject(name);
            if (l.File is not null)
            {
                w.WriteString("file", c.Resolve(l.File));
                w.WriteNumber("entries", rt.Lists.Entries(name).Count);
            }
            else Strings(w, "items", l.Items);
            w.WriteEndObject();
        }
        w.WriteEndObject();

        w.WriteStartArray("listeners");
        foreach (var l in c.Listeners) Listener(w, c, l);
        w.WriteEndArray();

        w.WriteStartObject("upstreams");
        foreach (var (name, u) in c.Upstreams.OrderBy(u => u.Key, StringComparer.Ordinal))
        {
            w.WriteStartObject(name);
            Strings(w, "targets", u.Targets.Select(Redact.Url));
            w.WriteString("balance", u.Balance);
            if (u.Health is { } h)
            {
                w.WriteStartObject("health");
                w.WriteString("path", h.Path);
                w.WriteString("interval", Dur(h.Interval));
                w.WriteString("timeout", Dur(h.Timeout));
                w.WriteNumber("fails", h.Fails);
                w.WriteNumber("passes", h.Passes);
                w.WriteEndObject();
            }
            if (u.CaFile is not null) w.WriteString("ca", c.Resolve(u.CaFile));
            if (u.InsecureTls) w.WriteBoolean("insecure_tls", true);
            w.WriteEndObject();
        }
        w.WriteEndObject();

        w.WriteStartObject("policies");
        foreach (var (name, p) in c.Policies.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            w.WriteStartObject(name);
            w.WriteString("default", p.Default == Verdict.Allow ? "allow" : "deny");
            w.WriteStartArray("rules");
            foreach (var r in p.Rules)
            {
                w.WriteStartObject();
                if (r.Name is not null) w.WriteString("name", r.Name);
                w.WriteStartObject(r.Verdict == Verdict.Allow ? "allow" : "deny");
                Conditions(w, r.Conditions);
                w.WriteEndObject();
                if (r.Reason is not null) w.WriteString("reason", r.Reason);
                w.WriteString("at", $"{r.Pos.Line}:{r.Pos.Col}");
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndObject();
        w.WriteEndObject();
    }

    static void Listener(Utf8JsonWriter w, BastionConfig c, ListenerConfig l)
    {
        w.WriteStartObject();
        w.WriteString("name", l.Name);
        w.WriteString("type", ListenerTypes.Name(l.Type));
        w.WriteString("listen", l.Listen.ToString());
        w.WriteString("policy", l.Policy);
        w.WriteBoolean("authenticate", l.Authenticate);
        if (l.Upstream is not null) w.WriteString("upstream", Redact.Url(l.Upstream));
        if (!l.AcceptProxyProtocol.IsEmpty) Strings(w, "accept_proxy_protocol", l.AcceptProxyProtocol);
        if (l.ProxyProtocol != ProxyProtocolVersion.None) w.WriteString("proxy_protocol", l.ProxyProtocol.ToString().ToLowerInvariant());
        if (l.Socks4) w.WriteBoolean("socks4", true);
        if (l.Via) w.WriteBoolean("via", true);
        if (!l.TrustedProxies.IsEmpty) Strings(w, "trusted_proxies", l.TrustedProxies);
        if (!l.Tls.IsEmpty)
        {
            w.WriteStartArray("tls");
            foreach (var t in l.Tls)
            {
                w.WriteStartObject();
                w.WriteString("cert", c.Resolve(t.Cert));
                w.WriteString("key", c.Resolve(t.Key));
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        if (l.TlsInspection is { } ti)
        {
            // Paths only: the CA key's content never leaves the gateway.
            w.WriteStartObject("tls_inspection");
            w.WriteString("ca", c.Resolve(ti.Ca.Text));
            Strings(w, "inspect", ti.Inspect.Select(v => v.Text));
            Strings(w, "skip", ti.Skip.Select(v => v.Text));
            if (ti.UpstreamCa is { } uca) w.WriteString("upstream_ca", c.Resolve(uca.Text));
            Strings(w, "insecure_upstream", ti.InsecureUpstream.Select(v => v.Text));
            w.WriteEndObject();
        }
        if (!l.Routes.IsEmpty)
        {
            w.WriteStartArray("routes");
            foreach (var r in l.Routes)
            {
                w.WriteStartObject();
                if (r.Host is not null) w.WriteString("host", r.Host);
                if (r.Path is not null) w.WriteString("path", r.Path);
                if (!r.Methods.IsEmpty) Strings(w, "methods", r.Methods);
                if (!r.Headers.IsEmpty)
                {
                    w.WriteStartObject("headers");
                    foreach (var (k, v) in r.Headers) w.WriteString(k, v);
                    w.WriteEndObject();
                }
                w.WriteString("upstream", Redact.Url(r.Upstream));
                if (r.StripPrefix is not null) w.WriteString("strip_prefix", r.StripPrefix);
                if (r.RewritePrefix is not null) w.WriteString("rewrite_prefix", r.RewritePrefix);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        if (l.Ftp is { } ftp)
        {
            w.WriteStartObject("ftp");
            w.WriteString("passive_ports", ftp.PassivePorts);
            w.WriteString("passive_address", ftp.PassiveAddress);
            w.WriteString("data_mode", ftp.DataMode);
            if (ftp.Tls is { } ftls) { w.WriteStartObject("tls"); w.WriteString("cert", c.Resolve(ftls.Cert)); w.WriteString("key", c.Resolve(ftls.Key)); w.WriteEndObject(); }
            w.WriteString("client_tls", ftp.ClientTlsRequired ? "required" : "optional");
            w.WriteString("upstream_tls", ftp.UpstreamTls);
            w.WriteString("upstream_ca", ftp.UpstreamCa);
            w.WriteNumber("max_line", ftp.MaxLine);
            w.WriteString("data_timeout", Dur(ftp.DataTimeout));
            w.WriteEndObject();
        }
        if (l.Smtp is { } smtp)
        {
            w.WriteStartObject("smtp");
            w.WriteString("banner", smtp.Banner);
            Strings(w, "extensions", smtp.Extensions);
            w.WriteString("upstream_tls", smtp.UpstreamTls);
            w.WriteNumber("max_recipients", smtp.MaxRecipients);
            w.WriteNumber("max_line", smtp.MaxLine);
            w.WriteNumber("max_message", smtp.MaxMessage);
            w.WriteString("bare_newline", smtp.BareNewline);
            w.WriteBoolean("allow_address_hacks", smtp.AllowAddressHacks);
            w.WriteBoolean("tls", smtp.Tls is not null);
            w.WriteEndObject();
        }
        var lim = l.Limits;
        w.WriteStartObject("limits");
        w.WriteNumber("max_connections", lim.MaxConnections);
        w.WriteString("idle_timeout", Dur(lim.IdleTimeout));
        w.WriteString("header_timeout", Dur(lim.HeaderTimeout));
        w.WriteString("connect_timeout", Dur(lim.ConnectTimeout));
        w.WriteString("response_timeout", Dur(lim.ResponseTimeout));
        w.WriteString("drain_timeout", Dur(lim.DrainTimeout));
        w.WriteNumber("max_request_body", lim.MaxRequestBody);
        w.WriteNumber("max_header_size", lim.MaxHeaderSize);
        if (lim.Rate > 0)
        {
            w.WriteNumber("rate", lim.Rate);
            w.WriteNumber("burst", lim.Burst);
        }
        w.WriteEndObject();
        w.WriteEndObject();
    }

    static void Conditions(Utf8JsonWriter w, IEnumerable<ConditionSpec> conditions)
    {
        foreach (var cond in conditions)
        {
            if (!cond.Nested.IsEmpty)
            {
                w.WriteStartObject(cond.Key);
                Conditions(w, cond.Nested);
                w.WriteEndObject();
            }
            else if (!cond.HeaderMap.IsEmpty)
            {
                w.WriteStartObject(cond.Key);
                foreach (var (name, patterns) in cond.HeaderMap)
                    Strings(w, name.Text, patterns.Select(p => Redact.IsSecretHeader(name.Text) ? Redact.Hidden : p.Text));
                w.WriteEndObject();
            }
            else Strings(w, cond.Key, cond.Values.Select(v => v.Text));
        }
    }

    /// <summary>A duration as the YAML would say it: 90s, 5m, 250ms.</summary>
    static string Dur(TimeSpan t) =>
        t.TotalMilliseconds % 1000 != 0 ? $"{t.TotalMilliseconds:0}ms"
        : t.TotalSeconds % 3600 == 0 && t.TotalSeconds > 0 ? $"{t.TotalHours:0}h"
        : t.TotalSeconds % 60 == 0 && t.TotalSeconds > 0 ? $"{t.TotalMinutes:0}m"
        : $"{t.TotalSeconds:0}s";

    static void Strings(Utf8JsonWriter w, string name, IEnumerable<string> values)
    {
        w.WriteStartArray(name);
        foreach (var v in values) w.WriteStringValue(v);
        w.WriteEndArray();
    }
}
