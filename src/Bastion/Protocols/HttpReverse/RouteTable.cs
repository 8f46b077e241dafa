using System.Collections.Immutable;
using Bastion.Configuration;
using Bastion.Policy;
using Bastion.Policy.Canonical;
using Microsoft.AspNetCore.Http;

namespace Bastion.Protocols.HttpReverse;

/// <summary>A request's header values as route `headers:` conditions see them (each field line on its own).</summary>
public interface IRouteHeaders
{
    /// <summary>True when some value of the header matches; false when none does or the header is absent.</summary>
    bool AnyValue(string name, StringPattern pattern);
}

/// <summary>Kestrel's headers (the HTTP/2 path).</summary>
public sealed class KestrelRouteHeaders(IHeaderDictionary headers) : IRouteHeaders
{
    public bool AnyValue(string name, StringPattern pattern)
    {
        if (!headers.TryGetValue(name, out var v)) return false;
        foreach (var s in v)
            if (s is not null && pattern.IsMatch(s)) return true;
        return false;
    }
}

/// <summary>
/// A route compiled from `routes:`. Matching allocates nothing: host is compared as a span, the path pattern is a
/// list of literal and parameter segments, headers are prepared patterns.
/// </summary>
public sealed class CompiledRoute
{
    public required RouteConfig Config { get; init; }
    public required int Index { get; init; }
    public required UpstreamGroup Upstream { get; init; }
    /// <summary>null: any host. Starts with "." for a `*.example.com` wildcard (subdomains only).</summary>
    public string? Host { get; init; }
    public bool HostWildcard { get; init; }
    public PathPattern? Path { get; init; }
    public string[] Methods { get; init; } = [];
    public (string Name, StringPattern Pattern)[] Headers { get; init; } = [];
    public string? StripPrefix { get; init; }
    public string? RewritePrefix { get; init; }
    /// <summary>The listener's `path_case`: literals and prefixes compare ignoring case unless it says sensitive.</summary>
    public bool IgnoreCase { get; init; } = true;
    /// <summary>How it is named in logs: the config position (routes have no names).</summary>
    public required string Label { get; init; }

    public bool Matches(string? host, string method, string path, IRouteHeaders headers)
    {
        if (Host is not null)
        {
            if (host is null) return false;
            if (HostWildcard)
            {
                if (host.Length <= Host.Length || !host.EndsWith(Host, StringComparison.OrdinalIgnoreCase)) return false;
            }
            else if (!host.Equals(Host, StringComparison.OrdinalIgnoreCase)) return false;
        }
        if (Methods.Length > 0 && Array.IndexOf(Methods, method) < 0)
        {
            bool found = false;
            foreach (var m in Methods)
                if (m.Equals(method, StringComparison.OrdinalIgnoreCase)) { found = true; break; }
            if (!found) return false;
        }
        if (Path is not null && !Path.IsMatch(path, IgnoreCase)) return false;
        foreach (var (name, pattern) in Headers)
            if (!headers.AnyValue(name, pattern)) return false;
        return true;
    }

    /// <summary>The path sent upstream: strip_prefix removed, then rewrite_prefix put in front.</summary>
    public PathString UpstreamPath(PathString path) =>
        StripPrefix is null && RewritePrefix is null ? path : new PathString(UpstreamPath(path.Value ?? "/"));

    /// <summary>
    /// The same on the canonical (percent-encoded) path as it is forwarded; the prefixes compare in the listener's
    /// path case mode, as routes and path rules do.
    /// </summary>
    public string UpstreamPath(string path)
    {
        if (StripPrefix is null && RewritePrefix is null) return path;
        var p = path;
        if (StripPrefix is { } strip && StartsWithSegment(p, strip, IgnoreCase))
        {
            p = p[strip.Length..];
            if (p.Length == 0 || p[0] != '/') p = "/" + p;
        }
        if (RewritePrefix is { } rw) p = p == "/" && rw.Length > 0 ? rw : rw + p;
        return p.Length == 0 ? "/" : p;
    }

    static bool StartsWithSegment(string path, string prefix, bool ignoreCase) =>
        path.StartsWith(prefix, ignoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal) &&
        (path.Length == prefix.Length || prefix.EndsWith('/') || path[prefix.Length] == '/');

    /// <summary>Specificity, higher first: host (exact over longer wildcard over any), then path (longer literal
    /// prefix, more segments, no catch-all), then how many method and header conditions it has.</summary>
    internal (int Host, int PathLiterals, int PathSegments, int NoCatchAll, int Constraints) Rank =>
        (Host is null ? 0 : HostWildcard ? 1 + Host.Length : 100_000,
         Path?.LiteralLength ?? -1, Path?.Segments ?? 0, Path?.HasCatchAll == false ? 1 : 0,
         (Methods.Length > 0 ? 1 : 0) + Headers.Length);
}

/// <summary>
/// A path template as YARP and ASP.NET write them: literal segments, `{name}` for one segment and `{**name}` (or
/// `{*name}`) for the rest, which may be empty; `*` and `**` are short for them (and need no quotes in YAML flow
/// maps). Literals compare case-insensitively.
/// </summary>
public sealed class PathPattern
{
    readonly string?[] _segments;   // null: one parameter segment
    public bool HasCatchAll { get; }
    public int Segments => _segments.Length;
    public int LiteralLength { get; }
    public string Text { get; }

    PathPattern(string text, string?[] segments, bool catchAll)
    {
        Text = text;
        _segments = segments;
        HasCatchAll = catchAll;
        LiteralLength = segments.Sum(s => s?.Length + 1 ?? 0);
    }

    public static PathPattern Parse(string text, out string? error)
    {
        error = null;
        var t = text.Trim();
        if (!t.StartsWith('/')) t = "/" + t;
        var parts = t[1..].Split('/');
        var segs = new List<string?>();
        bool catchAll = false;
        for (int i = 0; i < parts.Length; i++)
        {
            var p = parts[i];
            if (p.Length == 0 && i == parts.Length - 1) break; // trailing slash
            if ((p.StartsWith('{') && p.EndsWith('}')) || p is "*" or "**")
            {
                if (p.StartsWith("{*", StringComparison.Ordinal) || p == "**")
                {
                    if (i != parts.Length - 1) error = $"path '{text}': a catch-all {{**name}} must be the last segment";
                    catchAll = true;
                    break;
                }
                segs.Add(null);
            }
            else if (p.Contains('{') || p.Contains('}') || p.Contains('*')) error = $"path '{text}': a segment is either a literal or one {{parameter}}";
            else segs.Add(Uri.UnescapeDataString(p));
        }
        return new PathPattern(text, [.. segs], catchAll);
    }

    public bool IsMatch(ReadOnlySpan<char> path, bool ignoreCase = true)
    {
        if (path.IsEmpty) path = "/";
        int pos = path[0] == '/' ? 1 : 0;
        foreach (var seg in _segments)
        {
            if (pos > path.Length) return false;
            var rest = path[pos..];
            int slash = rest.IndexOf('/');
            var s = slash < 0 ? rest : rest[..slash];
            if (seg is null)
            {
                if (s.IsEmpty) return false;
            }
            else if (!s.Equals(seg, ignoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal)) return false;
            pos += s.Length + 1;
        }
        if (HasCatchAll) return true;
        // Exact: nothing left but an optional trailing slash.
        return pos >= path.Length || (pos == path.Length && path[^1] == '/');
    }
}

/// <summary>Routes ordered most specific first; the first that matches wins.</summary>
public sealed class RouteTable(CompiledRoute[] routes)
{
    public CompiledRoute[] Routes { get; } = routes;

    public CompiledRoute? Match(string? host, string method, string path, IRouteHeaders headers)
    {
        foreach (var r in Routes)
            if (r.Matches(host, method, path, headers)) return r;
        return null;
    }

    public static RouteTable Build(string listener, ImmutableArray<RouteConfig> routes, Func<string, UpstreamGroup> upstream, List<string> errors,
        bool ignoreCase = true)
    {
        var list = new List<CompiledRoute>();
        for (int i = 0; i < routes.Length; i++)
        {
            var r = routes[i];
            string? host = r.Host?.Trim().ToLowerInvariant();
            bool wildcard = false;
            if (host is "*" or "") host = null;
            else if (host is not null && host.StartsWith("*.", StringComparison.Ordinal))
            {
                // Written as hosts are judged: no trailing dot, IDN as punycode.
                host = "." + (HostName.Normalize(host.AsSpan(2)) ?? host[2..]);
                wildcard = true;
            }
            else if (host is not null) host = HostName.Normalize(host) ?? host;
            PathPattern? path = null;
            if (r.Path is { } p)
            {
                path = PathPattern.Parse(p, out var err);
                if (err is not null) errors.Add(err);
                // `/{**rest}` matches every path: same as no path at all, and ranks as such.
                if (path.Segments == 0 && path.HasCatchAll) path = null;
            }
            list.Add(new CompiledRoute
            {
                Config = r,
                Index = i,
                Upstream = upstream(r.Upstream),
                Host = host,
                HostWildcard = wildcard,
                Path = path,
                Methods = [.. r.Methods],
                Headers = [.. r.Headers.Select(h => (h.Key, new StringPattern(h.Value, pathAware: false, ignoreCase: true)))],
                IgnoreCase = ignoreCase,
                StripPrefix = NormalizePrefix(r.StripPrefix),
                RewritePrefix = NormalizePrefix(r.RewritePrefix),
                Label = $"{listener}.routes#{i + 1}",
            });
        }
        // Stable: equally specific routes keep their order in the file.
        var ordered = list.OrderByDescending(r => r.Rank).ThenBy(r => r.Index).ToArray();
        return new RouteTable(ordered);
    }

    static string? NormalizePrefix(string? p)
    {
        if (p is null) return null;
        p = p.Trim();
        if (p.Length == 0 || p == "/") return "";
        if (!p.StartsWith('/')) p = "/" + p;
        return p.TrimEnd('/');
    }
}
