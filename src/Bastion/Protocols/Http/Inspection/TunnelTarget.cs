using Bastion.Configuration;
using Bastion.Policy;
using Bastion.Policy.Canonical;

namespace Bastion.Protocols.Http.Inspection;

/// <summary>
/// What the policy sees of a request inside an inspected tunnel, for HTTP/1.1 and HTTP/2 alike: the target is
/// origin-form (or an absolute https URL naming the tunnel's own origin), judged as https://name/path with the
/// tunnel's name as host and its SNI as sni. The Host (or :authority) must be that name: no fronting another site
/// behind an allowed one.
/// </summary>
static class TunnelTarget
{
    public static bool TryRequest(RequestAttributes a, InspectedOrigin tunnel, string method, string target, string? host,
        out Uri? uri, out int status, out string? error, ListenerConfig? listener = null)
    {
        uri = null;
        status = 0;
        error = null;
        if (method == "CONNECT")
        {
            (status, error) = (405, "CONNECT inside an inspected tunnel is not supported");
            return false;
        }
        // The one canonical form, as outside the tunnel (docs/policy.md): judged and forwarded alike.
        var c = new CanonicalTarget();
        var parsed = RequestTarget.Parse(target, listener?.AmbiguousPaths ?? AmbiguousTargets.Refuse, c, out var why);
        if (parsed != TargetStatus.Ok)
        {
            (status, error) = (400, $"{(parsed == TargetStatus.Ambiguous ? "ambiguous" : "malformed")} request target: {why}");
            return false;
        }
        if (c.Host is not null && !(c.Scheme == "https" && c.Host.Equals(tunnel.Name, StringComparison.OrdinalIgnoreCase) && c.Port == tunnel.Port))
        {
            (status, error) = (400, $"a request inside the tunnel to {tunnel.Authority} must be for that origin");
            return false;
        }
        var url = tunnel.Url(c.PathAndQuery);
        uri = new Uri(url, new UriCreationOptions { DangerousDisablePathAndQueryCanonicalization = true });
        if (host is null || !(host.Equals(tunnel.Authority, StringComparison.OrdinalIgnoreCase)
            || (tunnel.Port == 443 && host.Equals(tunnel.Authority + ":443", StringComparison.OrdinalIgnoreCase))))
        {
            (status, error) = (421, $"Host '{host}' does not match the tunnel's server name {tunnel.Authority}");
            return false;
        }
        a.Method = method;
        a.Host = tunnel.Name;
        a.Port = tunnel.Port;
        a.Path = c.PolicyPath;
        a.Url = url;
        a.Sni = tunnel.Sni;
        a.PathIgnoreCase = listener?.PathIgnoreCase ?? true;
        return true;
    }
}
