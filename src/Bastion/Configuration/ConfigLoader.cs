using System.Collections.Immutable;
using System.Reflection;
using Bastion.Policy.Canonical;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Bastion.Configuration;

/// <summary>YAML text → <see cref="BastionConfig"/>. Structural checks only; names and files are checked by <see cref="ConfigValidator"/>.</summary>
public static class ConfigLoader
{
    public const string DefaultName = "<default>";

    public static string DefaultYaml()
    {
        using var s = Assembly.GetExecutingAssembly().GetManifestResourceStream("default.yaml")
            ?? throw new InvalidOperationException("embedded default config missing");
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }

    public static (BastionConfig? Config, List<ConfigError> Errors) Parse(string text, string? path)
    {
        var w = new YamlWalker(path ?? DefaultName);
        var stream = new YamlStream();
        try { stream.Load(new StringReader(text)); }
        catch (YamlException e)
        {
            var msg = e.InnerException?.Message ?? e.Message;
            w.Error(new SourcePos(w.File, (int)e.Start.Line, (int)e.Start.Column), $"YAML syntax: {msg}");
            return (null, w.Errors);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException or OverflowException)
        {
            // YamlDotNet's scanner throws these (not YamlException) on some malformed input, e.g. a flow mapping left
            // open: report where parsing stopped instead of letting a stack trace kill `run` (exit 134).
            var at = LastParsed(text);
            w.Error(new SourcePos(w.File, (int)at.Line, (int)at.Column), "YAML syntax: cannot parse past here (an unclosed '{', '[' or quote?)");
            return (null, w.Errors);
        }
        if (stream.Documents.Count == 0)
        {
            w.Error(new SourcePos(w.File, 1, 1), "configuration is empty");
            return (null, w.Errors);
        }
        var root = w.Map(stream.Documents[0].RootNode, "configuration",
            "admin", "logging", "identity", "lists", "listeners", "upstreams", "policies", "resolver");
        if (root is null) return (null, w.Errors);

        var cfg = new BastionConfig { Path = path };
        if (root.TryGetValue("admin", out var admin)) cfg = cfg with { Admin = ParseAdmin(w, admin.Value) };
        if (root.TryGetValue("logging", out var logging)) cfg = cfg with { Logging = ParseLogging(w, logging.Value) };
        if (root.TryGetValue("identity", out var identity)) cfg = cfg with { Identity = ParseIdentity(w, identity.Value) };
        if (root.TryGetValue("lists", out var lists)) cfg = cfg with { Lists = ParseLists(w, lists.Value) };
        if (root.TryGetValue("listeners", out var listeners)) cfg = cfg with { Listeners = ParseListeners(w, listeners.Value) };
        if (root.TryGetValue("upstreams", out var upstreams)) cfg = cfg with { Upstreams = ParseUpstreams(w, upstreams.Value) };
        if (root.TryGetValue("policies", out var policies)) cfg = cfg with { Policies = ParsePolicies(w, policies.Value) };
        if (root.TryGetValue("resolver", out var resolver)) cfg = cfg with { Resolver = ParseResolver(w, resolver.Value) };
        return (cfg, w.Errors);
    }

    /// <summary>Where the last YAML event that parsed ended (the error path only).</summary>
    static YamlDotNet.Core.Mark LastParsed(string text)
    {
        var parser = new Parser(new StringReader(text));
        var at = new YamlDotNet.Core.Mark(1, 1, 1);
        try
        {
            while (parser.MoveNext())
                if (parser.Current is { } ev) at = ev.End;
        }
        catch (Exception e) when (e is YamlException or InvalidOperationException or ArgumentException or FormatException or OverflowException) { }
        return at;
    }

    static AdminConfig? ParseAdmin(YamlWalker w, YamlNode n)
    {
        var m = w.Map(n, "admin", "listen", "token_file");
        if (m is null) return null;
        HostPort? listen = new("127.0.0.1", 9090);
        if (m.TryGetValue("listen", out var l)) listen = w.HostPort(l.Value, "admin.listen");
        string? token = m.TryGetValue("token_file", out var t) ? w.Scalar(t.Value, "admin.token_file") : null;
        return listen is null ? null : new AdminConfig(listen, token, w.Pos(n));
    }

    static ResolverConfig? ParseResolver(YamlWalker w, YamlNode n)
    {
        var m = w.Map(n, "resolver", "hosts", "dns");
        if (m is null) return null;
        var hosts = m.TryGetValue("hosts", out var h) ? w.Scalar(h.Value, "resolver.hosts") : null;
        bool dns = !m.TryGetValue("dns", out var d) || Choice(w, d.Value, "dns", "system", "off") != "off";
        return new ResolverConfig(hosts, dns, h.Value is { } hv ? w.Pos(hv) : w.Pos(n));
    }

    static LoggingConfig ParseLogging(YamlWalker w, YamlNode n)
    {
        var m = w.Map(n, "logging", "access", "format", "connections", "syslog");
        if (m is null) return LoggingConfig.Default;
        var access = m.TryGetValue("access", out var a) ? w.Scalar(a.Value, "logging.access") ?? "stdout" : "stdout";
        var logging = new LoggingConfig(access, m.TryGetValue("access", out var a2) ? w.Pos(a2.Value) : w.Pos(n));
        if (m.TryGetValue("format", out var f) && w.Scalar(f.Value, "logging.format") is { } format)
        {
            if (Observability.LogFormats.AccessLogFormat.Parse(format, out var error) is null) w.Error(f.Value, error!);
            logging = logging with { Format = format, FormatPos = w.Pos(f.Value) };
        }
        if (m.TryGetValue("connections", out var c)) logging = logging with { Connections = w.Bool(c.Value, "logging.connections") ?? false };
        if (m.TryGetValue("syslog", out var s)) logging = logging with { Syslog = ParseSyslog(w, s.Value) };
        else if (access == "syslog") logging = logging with { Syslog = SyslogConfig.Default with { Pos = logging.Pos } };
        return logging;
    }

    static SyslogConfig ParseSyslog(YamlWalker w, YamlNode n)
    {
        var m = w.Map(n, "logging.syslog", "address", "facility", "app_name");
        var cfg = SyslogConfig.Default with { Pos = w.Pos(n) };
        if (m is null) return cfg;
        if (m.TryGetValue("address", out var a) && w.Scalar(a.Value, "logging.syslog.address") is { } address)
        {
            if (!address.StartsWith('/') && !address.StartsWith("unix:/", StringComparison.Ordinal)
                && !Observability.Syslog.SyslogSender.TryParseNetwork(address, out _, out _, out var error))
                w.Error(a.Value, error!);
            cfg = cfg with { Address = address };
        }
        if (m.TryGetValue("facility", out var f) && w.Scalar(f.Value, "logging.syslog.facility") is { } facility)
        {
            if (SyslogConfig.Facilities.TryGetValue(facility, out var code)) cfg = cfg with { Facility = code };
            else w.Error(f.Value, $"logging.syslog.facility '{facility}' is not a syslog facility{Suggest.Hint(facility, SyslogConfig.Facilities.Keys)} (daemon, local0 ... local7, ...)");
        }
        if (m.TryGetValue("app_name", out var app) && w.Scalar(app.Value, "logging.syslog.app_name") is { } name)
        {
            if (name.Length is 0 or > 48 || name.Any(ch => ch is <= ' ' or >= '\x7f')) w.Error(app.Value, "logging.syslog.app_name must be 1-48 printable characters without spaces");
            else cfg = cfg with { AppName = name };
        }
        return cfg;
    }

    static IdentityConfig? ParseIdentity(YamlWalker w, YamlNode n)
    {
        var m = w.Map(n, "identity", "users", "groups");
        if (m is null) return null;
        string? users = m.TryGetValue("users", out var u) ? w.Scalar(u.Value, "identity.users") : null;
        var groups = ImmutableDictionary.CreateBuilder<string, ImmutableArray<string>>(StringComparer.Ordinal);
        if (m.TryGetValue("groups", out var g))
        {
            var gm = w.Map(g.Value, "identity.groups");
            if (gm is not null)
                foreach (var (name, (_, v)) in gm)
                    groups[name] = [.. w.ScalarOrList(v, $"group '{name}'").Select(x => x.Text)];
        }
        // Errors about the users file point at its name.
        return new IdentityConfig(users, groups.ToImmutable(), u.Value is { } uv ? w.Pos(uv) : w.Pos(n));
    }

    static ImmutableDictionary<string, ListConfig> ParseLists(YamlWalker w, YamlNode n)
    {
        var result = ImmutableDictionary.CreateBuilder<string, ListConfig>(StringComparer.Ordinal);
        var m = w.Map(n, "lists");
        if (m is null) return result.ToImmutable();
        foreach (var (name, (_, v)) in m)
        {
            if (v is YamlSequenceNode)
                result[name] = new ListConfig(name, [.. w.ScalarOrList(v, $"list '{name}'").Select(x => x.Text)], null, w.Pos(v));
            else
            {
                var lm = w.Map(v, $"list '{name}'", "file");
                if (lm is null) continue;
                if (!lm.TryGetValue("file", out var f)) { w.Error(v, $"list '{name}' needs 'file:' or a list of items"); continue; }
                var file = w.Scalar(f.Value, $"list '{name}' file");
                if (file is not null) result[name] = new ListConfig(name, [], file, w.Pos(f.Value));
            }
        }
        return result.ToImmutable();
    }

    static readonly string[] ListenerKeys =
    [
        "name", "type", "listen", "authenticate", "policy", "tls_inspection", "limits", "accept_proxy_protocol",
        "tls", "routes", "upstream", "ftp", "smtp", "socks4", "proxy_protocol", "via", "trusted_proxies",
        "path_case", "ambiguous_paths", "conflicting_headers",
    ];

    static ImmutableArray<ListenerConfig> ParseListeners(YamlWalker w, YamlNode n)
    {
        if (n is not YamlSequenceNode seq) { w.Error(n, "listeners must be a list"); return []; }
        var list = ImmutableArray.CreateBuilder<ListenerConfig>();
        foreach (var item in seq.Children)
        {
            var m = w.Map(item, "listener", ListenerKeys);
            if (m is null) continue;
            string? name = m.TryGetValue("name", out var nm) ? w.Scalar(nm.Value, "listener name") : null;
            if (name is null) { w.Error(item, "listener needs a 'name'"); continue; }
            if (!m.TryGetValue("type", out var tn)) { w.Error(item, $"listener '{name}' needs a 'type'"); continue; }
            var typeText = w.Scalar(tn.Value, "type");
            if (typeText is null) continue;
            if (!ListenerTypes.TryParse(typeText, out var type))
            {
                w.Error(tn.Value, $"unknown listener type '{typeText}'{Suggest.Hint(typeText, Enum.GetValues<ListenerType>().Select(ListenerTypes.Name))} (expected http-proxy, http-reverse, ftp, smtp, socks5 or tcp)");
                continue;
            }
            if (!m.TryGetValue("listen", out var ln)) { w.Error(item, $"listener '{name}' needs 'listen: host:port'"); continue; }
            var listen = w.HostPort(ln.Value, "listen");
            if (listen is null) continue;
            var l = new ListenerConfig
            {
                Name = name,
                Type = type,
                Listen = listen,
                Pos = w.Pos(item),
                KeyPos = m.ToImmutableDictionary(kv => kv.Key, kv => w.Pos(kv.Value.Value), StringComparer.Ordinal),
            };
            foreach (var (key, (kn, v)) in m)
            {
                switch (key)
                {
                    case "authenticate": l = l with { Authenticate = w.Bool(v, "authenticate") ?? false }; break;
                    case "policy": l = l with { Policy = w.Scalar(v, "policy") }; break;
                    case "limits": l = l with { Limits = ParseLimits(w, v) }; break;
                    case "accept_proxy_protocol": l = l with { AcceptProxyProtocol = [.. w.ScalarOrList(v, "accept_proxy_protocol").Select(x => x.Text)] }; break;
                    case "trusted_proxies": l = l with { TrustedProxies = [.. w.ScalarOrList(v, "trusted_proxies").Select(x => x.Text)] }; break;
                    case "tls": l = l with { Tls = ParseTlsList(w, v) }; break;
                    case "tls_inspection": l = l with { TlsInspection = ParseTlsInspection(w, v) }; break;
                    case "routes": l = l with { Routes = ParseRoutes(w, v) }; break;
                    case "upstream": l = l with { Upstream = w.Scalar(v, "upstream") }; break;
                    case "ftp": l = l with { Ftp = ParseFtp(w, v) }; break;
                    case "smtp": l = l with { Smtp = ParseSmtp(w, v) }; break;
                    case "socks4": l = l with { Socks4 = w.Bool(v, "socks4") ?? false }; break;
                    case "via": l = l with { Via = w.Bool(v, "via") ?? false }; break;
                    case "path_case": l = l with { PathIgnoreCase = Choice(w, v, key, "insensitive", "sensitive") != "sensitive" }; break;
                    case "ambiguous_paths": l = l with { AmbiguousPaths = Choice(w, v, key, "refuse", "pass") == "pass" ? AmbiguousTargets.Pass : AmbiguousTargets.Refuse }; break;
                    case "conflicting_headers": l = l with { RefuseConflictingHeaders = Choice(w, v, key, "judge", "refuse") == "refuse" }; break;
                    case "proxy_protocol":
                        var pp = w.Scalar(v, "proxy_protocol");
                        switch (pp)
                        {
                            case "v1": l = l with { ProxyProtocol = ProxyProtocolVersion.V1 }; break;
                            case "v2": l = l with { ProxyProtocol = ProxyProtocolVersion.V2 }; break;
                            case "off" or "none" or "false": break;
                            case null: break;
                            default: w.Error(v, $"proxy_protocol must be v1 or v2, not '{pp}'"); break;
                        }
                        break;
                }
                _ = kn;
            }
            list.Add(l);
        }
        return list.ToImmutable();
    }

    /// <summary>One of a few words; an error naming them otherwise.</summary>
    static string? Choice(YamlWalker w, YamlNode v, string key, params string[] options)
    {
        var s = w.Scalar(v, key);
        if (s is null || options.Contains(s)) return s;
        w.Error(v, $"{key} must be {string.Join(" or ", options)}, not '{s}'");
        return null;
    }

    static Limits ParseLimits(YamlWalker w, YamlNode n)
    {
        var m = w.Map(n, "limits", "max_connections", "idle_timeout", "header_timeout", "connect_timeout",
            "response_timeout", "max_request_body", "max_header_size", "rate", "burst", "drain_timeout");
        var l = Limits.Default;
        if (m is null) return l;
        foreach (var (key, (_, v)) in m)
        {
            switch (key)
            {
                case "max_connections": l = l with { MaxConnections = w.Int(v, key, 1, 1_000_000) ?? l.MaxConnections }; break;
                case "idle_timeout": l = l with { IdleTimeout = w.Duration(v, key) ?? l.IdleTimeout }; break;
                case "header_timeout": l = l with { HeaderTimeout = w.Duration(v, key) ?? l.HeaderTimeout }; break;
                case "connect_timeout": l = l with { ConnectTimeout = w.Duration(v, key) ?? l.ConnectTimeout }; break;
                case "response_timeout": l = l with { ResponseTimeout = w.Duration(v, key) ?? l.ResponseTimeout }; break;
                case "drain_timeout": l = l with { DrainTimeout = w.Duration(v, key) ?? l.DrainTimeout }; break;
                case "max_request_body": l = l with { MaxRequestBody = w.Size(v, key) ?? l.MaxRequestBody }; break;
                case "max_header_size": l = l with { MaxHeaderSize = (int)Math.Min(int.MaxValue, w.Size(v, key) ?? l.MaxHeaderSize) }; break;
                case "burst": l = l with { Burst = w.Int(v, key, 1, 1_000_000) ?? l.Burst }; break;
                case "rate":
                    var r = w.Scalar(v, key);
                    if (r is null) break;
                    var (num, per) = r.Contains('/') ? (r[..r.IndexOf('/')], r[(r.IndexOf('/') + 1)..]) : (r, "s");
                    double div = per switch { "s" => 1, "m" => 60, "h" => 3600, _ => 0 };
                    if (div == 0 || !double.TryParse(num, System.Globalization.CultureInfo.InvariantCulture, out var rate) || rate <= 0)
                        w.Error(v, $"rate: '{r}' is not a rate (like 100/s, 600/m)");
                    else l = l with { Rate = rate / div };
                    break;
            }
        }
        if (l.Rate > 0 && l.Burst == 0) l = l with { Burst = (int)Math.Max(1, Math.Ceiling(l.Rate)) };
        return l;
    }

    static ImmutableArray<TlsCertConfig> ParseTlsList(YamlWalker w, YamlNode n)
    {
        if (n is YamlSequenceNode seq)
            return [.. seq.Children.Select(c => ParseTlsCert(w, c, "tls")).OfType<TlsCertConfig>()];
        var one = ParseTlsCert(w, n, "tls");
        return one is null ? [] : [one];
    }

    static TlsCertConfig? ParseTlsCert(YamlWalker w, YamlNode n, string what)
    {
        var m = w.Map(n, what, "cert", "key");
        if (m is null) return null;
        if (!m.TryGetValue("cert", out var c) || !m.TryGetValue("key", out var k))
        {
            w.Error(n, $"{what} needs both 'cert' and 'key'");
            return null;
        }
        var cert = w.Scalar(c.Value, "cert");
        var key = w.Scalar(k.Value, "key");
        return cert is null || key is null ? null : new TlsCertConfig(cert, key, w.Pos(n));
    }

    static TlsInspectionConfig? ParseTlsInspection(YamlWalker w, YamlNode n)
    {
        var m = w.Map(n, "tls_inspection", "ca", "inspect", "skip", "upstream_ca", "insecure_upstream");
        if (m is null) return null;
        ValueSpec? V(string k) => m.TryGetValue(k, out var v) && w.Scalar(v.Value, k) is { } t ? new ValueSpec(t, w.Pos(v.Value)) : null;
        ImmutableArray<ValueSpec> L(string k) => m.TryGetValue(k, out var v) ? [.. w.ScalarOrList(v.Value, k).Select(x => new ValueSpec(x.Text, w.Pos(x.Node)))] : [];
        if (V("ca") is not { } ca)
        {
            if (!m.ContainsKey("ca")) w.Error(n, "tls_inspection needs 'ca': the folder made by 'bastion ca init'");
            return null;
        }
        return new TlsInspectionConfig(ca, L("inspect"), L("skip"), V("upstream_ca"), L("insecure_upstream"), w.Pos(n));
    }

    static ImmutableArray<RouteConfig> ParseRoutes(YamlWalker w, YamlNode n)
    {
        if (n is not YamlSequenceNode seq) { w.Error(n, "routes must be a list"); return []; }
        var list = ImmutableArray.CreateBuilder<RouteConfig>();
        foreach (var item in seq.Children)
        {
            var m = w.Map(item, "route", "host", "path", "method", "headers", "upstream", "strip_prefix", "rewrite_prefix", "preserve_host");
            if (m is null) continue;
            if (!m.TryGetValue("upstream", out var up)) { w.Error(item, "route needs an 'upstream'"); continue; }
            var upstream = w.Scalar(up.Value, "upstream");
            if (upstream is null) continue;
            string? S(string k) => m.TryGetValue(k, out var v) ? w.Scalar(v.Value, k) : null;
            var methods = m.TryGetValue("method", out var mm) ? [.. w.ScalarOrList(mm.Value, "method").Select(x => x.Text.ToUpperInvariant())] : ImmutableArray<string>.Empty;
            var headers = ImmutableDictionary.CreateBuilder<string, string>(StringComparer.OrdinalIgnoreCase);
            if (m.TryGetValue("headers", out var hm))
            {
                var hmap = w.Map(hm.Value, "route headers");
                if (hmap is not null)
                    foreach (var (hk, (_, hv)) in hmap)
                        if (w.Scalar(hv, hk) is { } hvs) headers[hk] = hvs;
            }
            list.Add(new RouteConfig(S("host"), S("path"), methods, headers.ToImmutable(), upstream, S("strip_prefix"), S("rewrite_prefix"), w.Pos(item))
            {
                PreserveHost = m.TryGetValue("preserve_host", out var ph) ? w.Bool(ph.Value, "preserve_host") : null,
            });
        }
        return list.ToImmutable();
    }

    static FtpConfig? ParseFtp(YamlWalker w, YamlNode n)
    {
        var m = w.Map(n, "ftp", "passive_ports", "passive_address", "data_mode", "tls", "client_tls", "upstream_tls",
            "upstream_ca", "max_line", "data_timeout");
        if (m is null) return null;
        string? S(string k) => m.TryGetValue(k, out var v) ? w.Scalar(v.Value, k) : null;
        YamlNode At(string k) => m.TryGetValue(k, out var v) ? v.Value : n;
        var mode = S("data_mode") ?? "passive";
        if (mode is not ("passive" or "active" or "keep")) w.Error(At("data_mode"), $"data_mode must be passive, active or keep, not '{mode}'");
        var ports = S("passive_ports");
        int lo = 0, hi = 0;
        if (ports is not null && !TryPortRange(ports, out lo, out hi))
            w.Error(At("passive_ports"), $"passive_ports: '{ports}' is not a port or a range like 50000-50100 (1024-65535)");
        var address = S("passive_address");
        if (address is not null && (!System.Net.IPAddress.TryParse(address, out var ip) || ip.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork))
            w.Error(At("passive_address"), $"passive_address: '{address}' is not an IPv4 address (PASV replies carry IPv4; EPSV carries only the port)");
        var clientTls = S("client_tls") ?? "optional";
        if (clientTls is not ("optional" or "required")) w.Error(At("client_tls"), $"client_tls must be optional or required, not '{clientTls}'");
        var upstreamTls = S("upstream_tls") ?? "off";
        if (upstreamTls is not ("required" or "opportunistic" or "off")) w.Error(At("upstream_tls"), $"upstream_tls must be required, opportunistic or off, not '{upstreamTls}'");
        var cfg = new FtpConfig(ports, mode, w.Pos(n))
        {
            PassiveLow = lo,
            PassiveHigh = hi,
            PassiveAddress = address,
            Tls = m.TryGetValue("tls", out var t) ? ParseTlsCert(w, t.Value, "ftp.tls") : null,
            ClientTlsRequired = clientTls == "required",
            UpstreamTls = upstreamTls,
            UpstreamCa = S("upstream_ca"),
            UpstreamCaPos = w.Pos(At("upstream_ca")),
        };
        if (m.TryGetValue("max_line", out var ml)) cfg = cfg with { MaxLine = w.Int(ml.Value, "max_line", 64, 65536) ?? cfg.MaxLine };
        if (m.TryGetValue("data_timeout", out var dt)) cfg = cfg with { DataTimeout = w.Duration(dt.Value, "data_timeout") ?? cfg.DataTimeout };
        if (cfg.ClientTlsRequired && cfg.Tls is null) w.Error(At("client_tls"), "client_tls: required needs ftp.tls (a certificate and key)");
        return cfg;
    }

    /// <summary>`50000` or `50000-50100`, within 1024-65535.</summary>
    static bool TryPortRange(string s, out int lo, out int hi)
    {
        lo = hi = 0;
        int dash = s.IndexOf('-');
        var a = dash < 0 ? s : s[..dash];
        var b = dash < 0 ? s : s[(dash + 1)..];
        if (!int.TryParse(a, System.Globalization.NumberStyles.None, null, out lo) || !int.TryParse(b, System.Globalization.NumberStyles.None, null, out hi)) return false;
        return lo >= 1024 && hi <= 65535 && lo <= hi;
    }

    static SmtpConfig? ParseSmtp(YamlWalker w, YamlNode n)
    {
        var m = w.Map(n, "smtp", "banner", "extensions", "tls", "upstream_tls", "max_recipients", "max_line", "max_message",
            "bare_newline", "allow_address_hacks", "upstream_ca", "auth", "auth_without_tls");
        if (m is null) return null;
        var banner = m.TryGetValue("banner", out var b) ? w.Scalar(b.Value, "banner") : null;
        ImmutableArray<string> ext = [];
        if (m.TryGetValue("extensions", out var e))
        {
            var items = w.ScalarOrList(e.Value, "extensions");
            foreach (var x in items)
                if (!Protocols.Smtp.Extensions.Known.Contains(x.Text.ToUpperInvariant()))
                    w.Error(e.Value, $"smtp.extensions: '{x.Text}' is not an extension the gateway can honour ({string.Join(", ", Protocols.Smtp.Extensions.Known)})");
            ext = [.. items.Select(x => x.Text.ToUpperInvariant())];
        }
        var tls = m.TryGetValue("tls", out var t) ? ParseTlsCert(w, t.Value, "smtp.tls") : null;
        var utls = m.TryGetValue("upstream_tls", out var u) ? w.Scalar(u.Value, "upstream_tls") ?? "opportunistic" : "opportunistic";
        if (utls is not ("required" or "opportunistic" or "off")) w.Error(u.Value, $"upstream_tls must be required, opportunistic or off, not '{utls}'");
        var max = m.TryGetValue("max_recipients", out var mr) ? w.Int(mr.Value, "max_recipients", 1, 100_000) ?? 100 : 100;
        var cfg = new SmtpConfig(banner, ext, tls, utls, max, w.Pos(n)) { ExtensionsGiven = m.ContainsKey("extensions") };
        if (m.TryGetValue("max_line", out var ml)) cfg = cfg with { MaxLine = w.Int(ml.Value, "max_line", 512, 65536) ?? cfg.MaxLine };
        if (m.TryGetValue("max_message", out var mm)) cfg = cfg with { MaxMessage = w.Size(mm.Value, "max_message") ?? cfg.MaxMessage };
        if (m.TryGetValue("bare_newline", out var bn))
        {
            var mode = w.Scalar(bn.Value, "bare_newline");
            if (mode is not ("refuse" or "normalize")) w.Error(bn.Value, $"bare_newline must be refuse or normalize, not '{mode}'");
            else cfg = cfg with { BareNewline = mode };
        }
        if (m.TryGetValue("allow_address_hacks", out var ah)) cfg = cfg with { AllowAddressHacks = w.Bool(ah.Value, "allow_address_hacks") ?? false };
        if (m.TryGetValue("upstream_ca", out var ca)) cfg = cfg with { UpstreamCa = w.Scalar(ca.Value, "upstream_ca") };
        if (m.TryGetValue("auth", out var au))
        {
            var mode = w.Scalar(au.Value, "auth");
            if (mode is not ("optional" or "required")) w.Error(au.Value, $"smtp.auth must be optional or required, not '{mode}'");
            else cfg = cfg with { Auth = mode };
        }
        if (m.TryGetValue("auth_without_tls", out var awt)) cfg = cfg with { AuthWithoutTls = w.Bool(awt.Value, "auth_without_tls") ?? false };
        return cfg;
    }

    static ImmutableDictionary<string, UpstreamConfig> ParseUpstreams(YamlWalker w, YamlNode n)
    {
        var result = ImmutableDictionary.CreateBuilder<string, UpstreamConfig>(StringComparer.Ordinal);
        var m = w.Map(n, "upstreams");
        if (m is null) return result.ToImmutable();
        foreach (var (name, (_, v)) in m)
        {
            var um = w.Map(v, $"upstream '{name}'", "targets", "balance", "health", "ca", "insecure_tls", "preserve_host");
            if (um is null) continue;
            if (!um.TryGetValue("targets", out var t)) { w.Error(v, $"upstream '{name}' needs 'targets'"); continue; }
            var targets = w.ScalarOrList(t.Value, "targets");
            var balance = um.TryGetValue("balance", out var b) ? w.Scalar(b.Value, "balance") ?? "round-robin" : "round-robin";
            if (balance is not ("round-robin" or "least-requests" or "power-of-two" or "random"))
                w.Error(b.Value, $"balance must be round-robin, least-requests, power-of-two or random, not '{balance}'");
            HealthConfig? health = null;
            if (um.TryGetValue("health", out var h))
            {
                var hm = w.Map(h.Value, "health", "path", "interval", "timeout", "fails", "passes");
                if (hm is not null)
                {
                    health = new HealthConfig(
                        hm.TryGetValue("path", out var hp) ? w.Scalar(hp.Value, "path") ?? "/" : "/",
                        hm.TryGetValue("interval", out var hi) ? w.Duration(hi.Value, "interval") ?? TimeSpan.FromSeconds(5) : TimeSpan.FromSeconds(5),
                        hm.TryGetValue("timeout", out var ht) ? w.Duration(ht.Value, "timeout") ?? TimeSpan.FromSeconds(2) : TimeSpan.FromSeconds(2),
                        hm.TryGetValue("fails", out var hf) ? w.Int(hf.Value, "fails", 1, 100) ?? 3 : 3,
                        hm.TryGetValue("passes", out var hs) ? w.Int(hs.Value, "passes", 1, 100) ?? 2 : 2,
                        w.Pos(h.Value));
                }
            }
            var ca = um.TryGetValue("ca", out var c) ? w.Scalar(c.Value, "ca") : null;
            var insecure = um.TryGetValue("insecure_tls", out var it) && (w.Bool(it.Value, "insecure_tls") ?? false);
            result[name] = new UpstreamConfig(name, [.. targets.Select(x => x.Text)], balance, health, ca, insecure, w.Pos(v))
            {
                PreserveHost = um.TryGetValue("preserve_host", out var ph) && (w.Bool(ph.Value, "preserve_host") ?? false),
            };
        }
        return result.ToImmutable();
    }

    static ImmutableDictionary<string, PolicyConfig> ParsePolicies(YamlWalker w, YamlNode n)
    {
        var result = ImmutableDictionary.CreateBuilder<string, PolicyConfig>(StringComparer.Ordinal);
        var m = w.Map(n, "policies");
        if (m is null) return result.ToImmutable();
        foreach (var (name, (_, v)) in m)
        {
            var pm = w.Map(v, $"policy '{name}'", "default", "rules");
            if (pm is null) continue;
            var def = Verdict.Deny;
            if (pm.TryGetValue("default", out var d))
            {
                var ds = w.Scalar(d.Value, "default");
                if (ds == "allow") def = Verdict.Allow;
                else if (ds != "deny") w.Error(d.Value, $"default must be allow or deny, not '{ds}'");
            }
            var rules = ImmutableArray.CreateBuilder<RuleConfig>();
            if (pm.TryGetValue("rules", out var r))
            {
                if (r.Value is not YamlSequenceNode rseq) w.Error(r.Value, "rules must be a list");
                else foreach (var rn in rseq.Children)
                    if (ParseRule(w, rn) is { } rule) rules.Add(rule);
            }
            result[name] = new PolicyConfig(name, def, rules.ToImmutable(), w.Pos(v));
        }
        return result.ToImmutable();
    }

    static RuleConfig? ParseRule(YamlWalker w, YamlNode n)
    {
        var m = w.Map(n, "rule", "allow", "deny", "reason", "name");
        if (m is null) return null;
        bool hasAllow = m.TryGetValue("allow", out var a), hasDeny = m.TryGetValue("deny", out var d);
        if (hasAllow == hasDeny)
        {
            w.Error(n, "a rule needs exactly one of 'allow:' or 'deny:'");
            return null;
        }
        var body = hasAllow ? a.Value : d.Value;
        var conds = ParseConditions(w, body);
        if (conds is null) return null;
        string? S(string k) => m.TryGetValue(k, out var v) ? w.Scalar(v.Value, k) : null;
        return new RuleConfig(hasAllow ? Verdict.Allow : Verdict.Deny, conds.Value, S("name"), S("reason"), w.Pos(n));
    }

    internal static readonly string[] ConditionKeys =
    [
        "source", "user", "group", "host", "port", "method", "path", "url", "header", "content_type",
        "command", "mail_from", "rcpt_to", "size", "time", "sni", "not", "upgrade",
    ];

    static ImmutableArray<ConditionSpec>? ParseConditions(YamlWalker w, YamlNode n)
    {
        var m = w.Map(n, "conditions", ConditionKeys);
        if (m is null) return null;
        var list = ImmutableArray.CreateBuilder<ConditionSpec>();
        foreach (var (key, (kn, v)) in m)
        {
            var pos = w.Pos(kn);
            if (key == "not")
            {
                var nested = ParseConditions(w, v);
                if (nested is { Length: 0 }) w.Error(v, "'not' needs at least one condition");
                if (nested is { } ns) list.Add(new ConditionSpec(key, [], ns, [], pos));
            }
            else if (key == "header")
            {
                var hm = w.Map(v, "header");
                if (hm is null) continue;
                var pairs = ImmutableArray.CreateBuilder<(ValueSpec, ImmutableArray<ValueSpec>)>();
                if (hm.Count == 0) { w.Error(v, "header needs at least one 'Name: pattern'"); continue; }
                foreach (var (hname, (hk, hv)) in hm)
                {
                    if (hv is YamlSequenceNode { Children.Count: 0 }) { w.Error(hv, $"header '{hname}': the list is empty"); continue; }
                    pairs.Add((new ValueSpec(hname, w.Pos(hk)), [.. w.ScalarOrList(hv, $"header '{hname}'").Select(x => new ValueSpec(x.Text, w.Pos(x.Node)))]));
                }
                list.Add(new ConditionSpec(key, [], [], pairs.ToImmutable(), pos));
            }
            else
            {
                var values = w.ScalarOrList(v, key);
                if (values.Count == 0)
                {
                    // An empty list would silently drop the condition and widen the rule.
                    if (v is YamlSequenceNode) w.Error(v, $"{key}: the list is empty (a rule without this condition would match more than meant)");
                    continue;
                }
                list.Add(new ConditionSpec(key, [.. values.Select(x => new ValueSpec(x.Text, w.Pos(x.Node)))], [], [], pos));
            }
        }
        return list.ToImmutable();
    }
}
