using Bastion.Policy;

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
        out Uri? uri, out int status, out string? error)
    {
        uri = null;
        status = 0;
        error = null;
        if (method == "CONNECT")
        {
            (status, error) = (405, "CONNECT inside an inspected tunnel is not supported");
            return false;
        }
        if (target.StartsWith('/')) uri = new Uri(tunnel.Url(target));
        else if (Uri.TryCreate(target, UriKind.Absolute, out var abs) && abs.Scheme == "https"
            && abs.IdnHost.Equals(tunnel.Name, StringComparison.OrdinalIgnoreCase) && abs.Port == tunnel.Port)
            uri = new Uri(tunnel.Url(abs.PathAndQuery));
        else
        {
            (status, error) = (400, $"a request inside the tunnel to {tunnel.Authority} must be for that origin");
            return false;
        }
        if (host is null || !(host.Equals(tunnel.Authority, StringComparison.OrdinalIgnoreCase)
            || (tunnel.Port == 443 && host.Equals(tunnel.Authority + ":443", StringComparison.OrdinalIgnoreCase))))
        {
            (status, error) = (421, $"Host '{host}' does not match the tunnel's server name {tunnel.Authority}");
            return false;
        }
        a.Method = method;
        a.Host = tunnel.Name;
        a.Port = tunnel.Port;
        a.Path = uri.AbsolutePath;
        a.Url = uri.OriginalString;
        a.Sni = tunnel.Sni;
        return true;
    }
}
