using Bastion.Configuration;
using Bastion.Policy;
using Bastion.Policy.Canonical;
using Bastion.Protocols.Http.Codec;

namespace Bastion.Protocols.Http.Inspection;

/// <summary>
/// What the policy sees of a request inside an inspected tunnel, for HTTP/1.1 and HTTP/2 alike: the target is
/// origin-form (or an absolute https URL naming the tunnel's own origin), judged as https://name/path with the
/// tunnel's name as host and its SNI as sni. The Host (or :authority) must be that name: no fronting another site
/// behind an allowed one. The caller's <see cref="CanonicalTarget"/> holds the path and query to forward; the URL
/// judged and logged comes back as <c>url</c>.
/// </summary>
static class TunnelTarget
{
    /// <summary>HTTP/1.1: the target and Host as the engine parsed them (no Host field: <paramref name="hasHost"/> false).</summary>
    public static bool TryRequest(RequestAttributes a, InspectedOrigin tunnel, string method, ReadOnlySpan<byte> target,
        bool hasHost, ReadOnlySpan<byte> host, CanonicalTarget c, out string? url, out int status, out string? error, ListenerConfig? listener = null)
    {
        url = null;
        if (!TryTarget(tunnel, method, RequestTarget.Parse(target, listener?.AmbiguousPaths ?? AmbiguousTargets.Refuse, c, out var why), why, c, out status, out error))
            return false;
        url = tunnel.Url(c.PathAndQuery);
        if (!hasHost || !tunnel.IsAuthority(host)) return HostMismatch(tunnel, hasHost ? HttpHead.Latin1(host) : null, out status, out error);
        Apply(a, tunnel, method, c, url, listener);
        return true;
    }

    /// <summary>HTTP/2: the target and :authority as Kestrel hands them over.</summary>
    public static bool TryRequest(RequestAttributes a, InspectedOrigin tunnel, string method, string target, string? host,
        CanonicalTarget c, out string? url, out int status, out string? error, ListenerConfig? listener = null)
    {
        url = null;
        if (!TryTarget(tunnel, method, RequestTarget.Parse(target, listener?.AmbiguousPaths ?? AmbiguousTargets.Refuse, c, out var why), why, c, out status, out error))
            return false;
        url = tunnel.Url(c.PathAndQuery);
        if (host is null || !tunnel.IsAuthority(host)) return HostMismatch(tunnel, host, out status, out error);
        Apply(a, tunnel, method, c, url, listener);
        return true;
    }

    /// <summary>The one canonical form, as outside the tunnel (docs/policy.md): judged and forwarded alike.</summary>
    static bool TryTarget(InspectedOrigin tunnel, string method, TargetStatus parsed, string? why, CanonicalTarget c, out int status, out string? error)
    {
        (status, error) = (0, null);
        if (method == "CONNECT")
            (status, error) = (405, "CONNECT inside an inspected tunnel is not supported");
        else if (parsed != TargetStatus.Ok)
            (status, error) = (400, $"{(parsed == TargetStatus.Ambiguous ? "ambiguous" : "malformed")} request target: {why}");
        else if (c.Host is not null && !(c.Scheme == "https" && c.Host.Equals(tunnel.Name, StringComparison.OrdinalIgnoreCase) && c.Port == tunnel.Port))
            (status, error) = (400, $"a request inside the tunnel to {tunnel.Authority} must be for that origin");
        return status == 0;
    }

    static bool HostMismatch(InspectedOrigin tunnel, string? host, out int status, out string? error)
    {
        (status, error) = (421, $"Host '{host}' does not match the tunnel's server name {tunnel.Authority}");
        return false;
    }

    static void Apply(RequestAttributes a, InspectedOrigin tunnel, string method, CanonicalTarget c, string url, ListenerConfig? listener)
    {
        a.Method = method;
        a.Host = tunnel.Name;
        a.Port = tunnel.Port;
        a.Path = c.PolicyPath;
        a.Url = url;
        a.Sni = tunnel.Sni;
        a.PathIgnoreCase = listener?.PathIgnoreCase ?? true;
    }
}
