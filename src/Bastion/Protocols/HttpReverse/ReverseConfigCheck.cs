using Bastion.Configuration;
using Bastion.Policy;

namespace Bastion.Protocols.HttpReverse;

/// <summary>What `bastion check` verifies for an http-reverse listener beyond the common checks.</summary>
public static class ReverseConfigCheck
{
    public static void Validate(ListenerConfig l, Action<SourcePos, string> err)
    {
        foreach (var r in l.Routes)
        {
            if (r.Path is { } p)
            {
                PathPattern.Parse(p, out var e);
                if (e is not null) err(r.Pos, $"listener '{l.Name}': route {e}");
            }
            if (r.Host is { } h && (h.Length == 0 || (h.Contains('*') && !(h == "*" || (h.StartsWith("*.", StringComparison.Ordinal) && h.LastIndexOf('*') == 0)))))
                err(r.Pos, $"listener '{l.Name}': route host '{h}' must be a name or '*.domain'");
            foreach (var (what, v) in new[] { ("strip_prefix", r.StripPrefix), ("rewrite_prefix", r.RewritePrefix) })
                if (v is not null && v.Length > 0 && v[0] != '/')
                    err(r.Pos, $"listener '{l.Name}': route {what} '{v}' must start with '/'");
        }
        var bad = new List<string>();
        CidrSet.Build(l.TrustedProxies.Where(t => !t.StartsWith('@')), bad);
        foreach (var b in bad) err(l.Pos, $"listener '{l.Name}': trusted_proxies: '{b}' is not an IP or CIDR");
    }
}
