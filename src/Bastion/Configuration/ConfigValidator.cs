using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;

namespace Bastion.Configuration;

/// <summary>Checks across the whole configuration: dangling names, port clashes, files, what this build can run.</summary>
public static class ConfigValidator
{
    /// <summary>The admin bearer token: the file's first line, trimmed; null when unreadable or empty.</summary>
    public static string? ReadToken(string path)
    {
        try
        {
            var line = File.ReadLines(path).FirstOrDefault()?.Trim();
            return string.IsNullOrEmpty(line) ? null : line;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    public static List<ConfigError> Validate(BastionConfig c)
    {
        var errors = new List<ConfigError>();
        void Err(SourcePos p, string m) => errors.Add(new ConfigError(p, m));

        var names = new HashSet<string>(StringComparer.Ordinal);
        var binds = new Dictionary<(string, int), string>();
        if (c.Admin is { } admin)
        {
            if (admin.Listen.Port != 0) binds[(BindHost(admin.Listen), admin.Listen.Port)] = "admin";
            if (admin.Listen.ToIPEndPoint() is null)
                Err(admin.Pos, $"admin.listen host '{admin.Listen.Host}' must be an IP address, localhost or *");
            if (admin.TokenFile is { } tf && !File.Exists(c.Resolve(tf))) Err(admin.Pos, $"admin.token_file: cannot read {c.Resolve(tf)}");
            else if (admin.TokenFile is { } tf2 && ReadToken(c.Resolve(tf2)) is null) Err(admin.Pos, $"admin.token_file: {c.Resolve(tf2)} holds no token");
            if (admin.TokenFile is null && admin.Listen.ToIPEndPoint() is { } ep && !System.Net.IPAddress.IsLoopback(ep.Address))
                Err(admin.Pos, "admin listens on a non-loopback address: set admin.token_file so that the API needs a bearer token");
        }

        foreach (var l in c.Listeners)
        {
            if (!names.Add(l.Name)) Err(l.PosOf("name"), $"duplicate listener name '{l.Name}'");
            if (!ListenerTypes.IsBuilt(l.Type))
                Err(l.PosOf("type"), $"listener '{l.Name}': type '{ListenerTypes.Name(l.Type)}' is not built yet in this version of bastion (available: {ListenerDescriptors.BuiltNames})");
            if (l.Listen.ToIPEndPoint() is null)
                Err(l.PosOf("listen"), $"listener '{l.Name}': listen host '{l.Listen.Host}' must be an IP address, localhost or *");
            if (l.Listen.Port != 0)
            {
                var key = (BindHost(l.Listen), l.Listen.Port);
                if (binds.TryGetValue(key, out var other)) Err(l.PosOf("listen"), $"listener '{l.Name}': {l.Listen} is already used by '{other}'");
                else
                {
                    // A wildcard bind clashes with every address on the same port.
                    foreach (var ((h, p), o) in binds)
                        if (p == l.Listen.Port && (IsWildcard(h) || IsWildcard(key.Item1)))
                            Err(l.PosOf("listen"), $"listener '{l.Name}': port {p} clashes with '{o}' ({h}:{p})");
                    binds[key] = l.Name;
                }
            }
            if (l.Policy is { } pol && !c.Policies.ContainsKey(pol))
                Err(l.PosOf("policy"), $"listener '{l.Name}': unknown policy '{pol}'{Suggest.Hint(pol, c.Policies.Keys)} (defined: {Names(c.Policies.Keys)})");
            if (l.Authenticate && c.Identity?.UsersFile is null)
                Err(l.PosOf("authenticate"), $"listener '{l.Name}': authenticate is on but identity.users names no htpasswd file");
            foreach (var t in l.Tls)
            {
                if (!File.Exists(c.Resolve(t.Cert))) Err(t.Pos, $"listener '{l.Name}': cannot read certificate {c.Resolve(t.Cert)}");
                if (!File.Exists(c.Resolve(t.Key))) Err(t.Pos, $"listener '{l.Name}': cannot read key {c.Resolve(t.Key)}");
            }
            var descriptor = ListenerDescriptors.Find(l.Type);
            descriptor?.Validate(c, l, Err);
            // Keys another type owns (routes are for http-reverse...).
            // How requests are normalised before the policy sees them (docs/policy.md): keys of the path-bearing types.
            foreach (var key in new[] { "ambiguous_paths", "conflicting_headers", "path_case" })
                if (l.KeyPos.ContainsKey(key) && l.Type is not (ListenerType.HttpProxy or ListenerType.HttpReverse)
                    && !(key == "path_case" && l.Type == ListenerType.Ftp))
                    Err(l.PosOf(key), $"listener '{l.Name}': {key} is for {(key == "path_case" ? "http-proxy, http-reverse and ftp" : "http-proxy and http-reverse")} listeners");
            foreach (var d in ListenerDescriptors.All)
            {
                if (d.Type == l.Type) continue;
                foreach (var k in d.OwnKeys)
                    if (k.IsSet(l)) Err(l.PosOf(k.Key), $"listener '{l.Name}': {k.Message}");
            }
        }

        foreach (var (name, u) in c.Upstreams)
        {
            if (u.Targets.IsEmpty) Err(u.Pos, $"upstream '{name}' has no targets");
            foreach (var t in u.Targets)
                if (!LooksLikeUrl(t) && !HostPort.TryParse(t, out _) && !IsTcpUrl(t))
                    Err(u.Pos, $"upstream '{name}': target '{t}' is neither a URL (http://host:port, tcp://host:port) nor host:port");
            if (u.CaFile is { } ca && !File.Exists(c.Resolve(ca))) Err(u.Pos, $"upstream '{name}': cannot read ca {c.Resolve(ca)}");
        }
        return errors;
    }

    internal static bool IsTcpUrl(string s) =>
        s.StartsWith("tcp://", StringComparison.OrdinalIgnoreCase) && HostPort.TryParse(s[6..].TrimEnd('/'), out _);

    static bool IsWildcard(string host) => host is "*" or "0.0.0.0" or "::" or "[::]";

    // localhost and 127.0.0.1 are the same socket.
    static string BindHost(HostPort hp) => hp.ToIPEndPoint()?.Address.ToString() ?? hp.Host;

    static string Names(IEnumerable<string> names) => names.Any() ? string.Join(", ", names.Order(StringComparer.Ordinal)) : "none";

    internal static bool LooksLikeUrl(string s) =>
        Uri.TryCreate(s, UriKind.Absolute, out var u) && (u.Scheme == "http" || u.Scheme == "https");

    public static List<ConfigError> Warnings(Runtime rt)
    {
        var warnings = new List<ConfigError>();
        void Warn(SourcePos p, string m) => warnings.Add(new ConfigError(p, m, IsWarning: true));
        foreach (var l in rt.Config.Listeners)
        {
            if (l.Policy is null)
            {
                Warn(l.Pos, $"listener '{l.Name}' names no policy: it denies everything");
                continue;
            }
            if (!rt.Policies.TryGetValue(l.Policy, out var p)) continue;
            if (ListenerDescriptors.Find(l.Type) is not { } descriptor) continue;
            var supplied = descriptor.Attributes;
            bool hasUser = l.Authenticate || descriptor.AlwaysHasUser;
            foreach (var r in p.AllRules)
            {
                foreach (var cond in r.Conditions)
                {
                    var attr = cond.Attribute;
                    if (!supplied.Contains(attr))
                        Warn(r.Pos, $"rule {r.Name} can never match on listener '{l.Name}' ({ListenerTypes.Name(l.Type)} does not supply '{attr}')");
                    else if (attr is "user" or "group" && !hasUser)
                        Warn(r.Pos, $"rule {r.Name} can never match on listener '{l.Name}': it asks about '{attr}' but the listener does not authenticate");
                }
            }
        }
        foreach (var p in rt.Policies.Values)
        {
            // Rules after one that matches every request are dead (the first match decides).
            var all = p.RequestRules.FirstOrDefault(r => r.Conditions.Length == 0);
            if (all is null) continue;
            foreach (var r in p.RequestRules)
                if (r.Index > all.Index)
                    Warn(r.Pos, $"rule {r.Name} is never reached: rule {all.Name} before it matches every request");
        }
        if (rt.Config.Identity is { UsersFile: not null } id && rt.Identity.UserCount > 0)
            foreach (var (group, members) in id.Groups)
                foreach (var m in members)
                    if (!rt.Identity.HasUser(m))
                        Warn(id.Pos, $"group '{group}' names '{m}', who is not in the users file");
        return warnings;
    }
}
