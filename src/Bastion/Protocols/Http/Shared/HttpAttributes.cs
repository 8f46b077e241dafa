using Bastion.Configuration;
using Bastion.Policy;

namespace Bastion.Protocols.Http;

/// <summary>
/// What the policy sees of an HTTP request: one function per way a request names its target, called by the live
/// sessions and by `bastion explain` alike, so that the two cannot disagree.
/// </summary>
public static class HttpAttributes
{
    /// <summary>
    /// A forward-proxy request: `CONNECT host:port`, or an absolute URL. `url` is the request target exactly as the
    /// client sent it (not normalised); `host` is the IDN (punycode) form, `path` the URL's escaped path.
    /// </summary>
    public static bool TryProxyTarget(RequestAttributes a, string method, string target, out Uri? uri, out string? error)
    {
        uri = null;
        error = null;
        a.Method = method;
        if (method == "CONNECT")
        {
            if (!HostPort.TryParse(target, out var hp) || hp!.Port == 0)
            {
                error = "CONNECT needs host:port";
                return false;
            }
            a.Host = hp.Host;
            a.Port = hp.Port;
            return true;
        }
        if (!Uri.TryCreate(target, UriKind.Absolute, out uri) || (uri.Scheme != "http" && uri.Scheme != "https") || uri.Host.Length == 0)
        {
            uri = null;
            error = target.StartsWith('/')
                ? "this is a forward proxy: the request target must be an absolute URL (http://host/path)"
                : "unsupported or malformed request target";
            return false;
        }
        a.Host = uri.IdnHost;
        a.Port = uri.Port;
        a.Path = uri.AbsolutePath;
        a.Url = target;
        return true;
    }

    /// <summary>
    /// A reverse-proxy request: `host` from the Host header (lower case, IPv6 without brackets), `port` the port the
    /// listener accepted it on (not the Host header's), `path` as Kestrel decodes it, `url` rebuilt from scheme,
    /// Host header, path and query.
    /// </summary>
    public static void Origin(RequestAttributes a, string method, string scheme, string hostHeader, string hostName,
        string path, string query, int localPort, bool withUrl)
    {
        a.Method = method;
        a.Port = localPort;
        a.Host = NormalizeHost(hostName);
        a.Path = path.Length == 0 ? "/" : path;
        if (withUrl) a.Url = scheme + "://" + hostHeader + path + query;
    }

    /// <summary>
    /// `explain`'s way into <see cref="Origin"/>: a URL as a browser would send it to a listener on
    /// <paramref name="localPort"/> (the Host header is the URL's authority; the path is decoded as Kestrel does).
    /// </summary>
    public static bool TryOriginUrl(RequestAttributes a, string method, string url, int localPort, out string? error)
    {
        error = null;
        if (!Uri.TryCreate(url, UriKind.Absolute, out var u) || (u.Scheme != "http" && u.Scheme != "https") || u.Host.Length == 0)
        {
            error = $"'{url}' is not an absolute http(s) URL";
            return false;
        }
        // Kestrel decodes %XX in the path except an encoded '/'.
        var path = Uri.UnescapeDataString(u.AbsolutePath.Replace("%2F", "%252F", StringComparison.OrdinalIgnoreCase));
        Origin(a, method, u.Scheme, u.Authority, u.Host, path, u.Query, localPort, withUrl: true);
        return true;
    }

    static string? NormalizeHost(string host)
    {
        if (host.Length == 0) return null;
        // An IPv6 literal is judged without its brackets, as `source` and `host` lists write it.
        if (host[0] == '[' && host[^1] == ']') host = host[1..^1];
        foreach (var ch in host)
            if (ch is >= 'A' and <= 'Z') return host.ToLowerInvariant();
        return host;
    }

    /// <summary>`METHOD TARGET` as explain takes it; the method upper-cased as clients send it.</summary>
    public static bool TrySplitRequest(string request, out string method, out string target, out string? error)
    {
        error = null;
        var parts = request.Trim().Split(' ', 2, StringSplitOptions.RemoveEmptyEntries);
        method = parts.Length > 0 ? parts[0].ToUpperInvariant() : "";
        target = parts.Length == 2 ? parts[1].Trim() : "";
        if (parts.Length == 2) return true;
        error = "an HTTP request is 'METHOD URL' (or 'CONNECT host:port')";
        return false;
    }
}
