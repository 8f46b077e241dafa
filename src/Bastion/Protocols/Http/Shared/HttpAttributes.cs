using System.Text;
using Bastion.Configuration;
using Bastion.Policy;
using Bastion.Policy.Canonical;

namespace Bastion.Protocols.Http;

/// <summary>
/// What the policy sees of an HTTP request: one function per way a request names its target, called by the live
/// sessions and by `bastion explain` alike, so that the two cannot disagree. Every target goes through the one
/// canonical form (<see cref="RequestTarget"/>, docs/policy.md): what is judged is what is forwarded.
/// </summary>
public static class HttpAttributes
{
    /// <summary>
    /// A forward-proxy request: `CONNECT host:port`, or an absolute URL, normalised into <paramref name="canonical"/>
    /// (the form to forward) and the attributes. Ambiguous targets still fill the attributes (explain shows them);
    /// the caller refuses them with 400 as it refuses malformed ones.
    /// </summary>
    public static TargetStatus ProxyTarget(RequestAttributes a, string method, string target, ListenerConfig listener,
        CanonicalTarget canonical, out string? error) =>
        ProxyTarget(a, method, Encoding.UTF8.GetBytes(target), listener, canonical, out error);

    /// <summary>As above, on the request target's bytes as the HTTP/1.1 engine parsed them.</summary>
    public static TargetStatus ProxyTarget(RequestAttributes a, string method, ReadOnlySpan<byte> target, ListenerConfig listener,
        CanonicalTarget canonical, out string? error)
    {
        error = null;
        a.Method = method;
        a.PathIgnoreCase = listener.PathIgnoreCase;
        if (method == "CONNECT")
        {
            var s = RequestTarget.ParseAuthority(target, out var host, out var port, out var why);
            if (s != TargetStatus.Ok)
            {
                error = $"CONNECT needs host:port ({why})";
                return s;
            }
            a.Host = host;
            a.Port = port;
            return TargetStatus.Ok;
        }
        var status = RequestTarget.Parse(target, listener.AmbiguousPaths, canonical, out var reason);
        if (status != TargetStatus.Malformed && (canonical.Host is null || canonical.Scheme is not ("http" or "https")))
        {
            error = !target.IsEmpty && target[0] == (byte)'/'
                ? "this is a forward proxy: the request target must be an absolute URL (http://host/path)"
                : "unsupported request target scheme";
            return TargetStatus.Malformed;
        }
        if (status == TargetStatus.Malformed)
        {
            error = $"malformed request target: {reason}";
            return status;
        }
        canonical.ApplyTo(a);
        if (status == TargetStatus.Ambiguous) error = $"ambiguous request target: {reason}";
        return status;
    }

    /// <summary>
    /// A reverse-proxy request: `host` from the Host header, normalised; `port` the port the listener accepted it on
    /// (not the Host header's); the raw target normalised (`path` decoded, `url` the canonical URL). `*` (OPTIONS)
    /// is judged as `/`.
    /// </summary>
    public static TargetStatus OriginTarget(RequestAttributes a, string method, string scheme, string? hostName, int? hostPort,
        string rawTarget, int localPort, ListenerConfig listener, CanonicalTarget canonical, bool withUrl, out string? error) =>
        rawTarget == "*"
            ? OriginTarget(a, method, scheme, hostName, hostPort, "*"u8, localPort, listener, canonical, withUrl, out error)
            : OriginTarget(a, method, scheme, hostName, hostPort, Encoding.UTF8.GetBytes(rawTarget), localPort, listener, canonical, withUrl, out error);

    /// <summary>As above, on the target's bytes (origin-form) as the HTTP/1.1 engine parsed them.</summary>
    public static TargetStatus OriginTarget(RequestAttributes a, string method, string scheme, string? hostName, int? hostPort,
        ReadOnlySpan<byte> rawTarget, int localPort, ListenerConfig listener, CanonicalTarget canonical, bool withUrl, out string? error)
    {
        error = null;
        a.Method = method;
        a.Port = localPort;
        a.PathIgnoreCase = listener.PathIgnoreCase;
        string? host = null;
        if (string.IsNullOrEmpty(hostName)) { }
        else if (ReferenceEquals(hostName, canonical.HostIn)) host = canonical.HostOut; // the connection's Host again
        else if (!HostName.TryNormalize(hostName, out host, out var hostError))
        {
            error = $"bad Host: {hostError}";
            return TargetStatus.Malformed;
        }
        else (canonical.HostIn, canonical.HostOut) = (hostName, host);
        a.Host = host;
        if (rawTarget.SequenceEqual("*"u8))
        {
            a.Path = "/";
            return TargetStatus.Ok;
        }
        var status = RequestTarget.Parse(rawTarget, listener.AmbiguousPaths, canonical, out var reason);
        if (status == TargetStatus.Malformed)
        {
            error = $"malformed request target: {reason}";
            return status;
        }
        if (canonical.Host is null && host is not null) canonical.SetAuthority(scheme, host, hostPort ?? CanonicalTarget.DefaultPort(scheme));
        a.Path = canonical.PolicyPath;
        if (withUrl) a.Url = canonical.Url;
        if (status == TargetStatus.Ambiguous) error = $"ambiguous request target: {reason}";
        return status;
    }

    /// <summary>
    /// `explain`'s way into <see cref="OriginTarget"/>: a URL as a browser would send it to a listener on
    /// <paramref name="localPort"/> (the Host header is the URL's authority, the target its path and query).
    /// Null when the text is no absolute http(s) URL at all.
    /// </summary>
    public static TargetStatus? OriginUrl(RequestAttributes a, string method, string url, int localPort, ListenerConfig listener,
        out string? error)
    {
        // Parsed leniently first (ambiguous forms kept as sent), then judged as the listener would judge the target.
        var c = new CanonicalTarget();
        var s = RequestTarget.Parse(url, AmbiguousTargets.Pass, c, out var why);
        if (s == TargetStatus.Malformed && url.Contains("://", StringComparison.Ordinal))
        {
            error = $"malformed request target: {why}";
            return TargetStatus.Malformed;
        }
        if (s != TargetStatus.Ok || c.Host is null || c.Scheme is not ("http" or "https"))
        {
            error = $"'{url}' is not an absolute http(s) URL";
            return null;
        }
        return OriginTarget(a, method, c.Scheme, c.Host, c.Port, c.PathAndQuery, localPort, listener, new CanonicalTarget(), withUrl: true, out error);
    }

    /// <summary>
    /// What the live listener answers to REQUEST before asking the policy (400 for a malformed or ambiguous target),
    /// or null: `explain` says so instead of judging attributes the gateway would never judge.
    /// </summary>
    public static string? Refusal(ListenerConfig listener, string request)
    {
        // Only HTTP listeners have a request line: `MAIL FROM:<a@b> SIZE=1000` or `SITE CHMOD 600 f` are not one.
        if (listener.Type is not (ListenerType.HttpProxy or ListenerType.HttpReverse)) return null;
        if (!TrySplitRequest(request, out var method, out var target, out _)) return null;
        // The wire's request-line parser refuses any byte outside visible ASCII in the target before the policy.
        if (target.AsSpan().ContainsAnyExceptInRange('!', '~'))
            return "400 malformed request line (a request target is visible ASCII: send other characters percent-encoded)";
        var a = new RequestAttributes();
        string? error = null;
        TargetStatus? status = listener.Type switch
        {
            ListenerType.HttpProxy => ProxyTarget(a, method, target, listener, new CanonicalTarget(), out error),
            ListenerType.HttpReverse when method != "CONNECT" => OriginUrl(a, method, target, listener.Listen.Port, listener, out error),
            _ => (TargetStatus?)null,
        };
        return status switch
        {
            TargetStatus.Ambiguous => $"400 {error} (ambiguous_paths: refuse)",
            TargetStatus.Malformed => $"400 {error}",
            _ => null,
        };
    }

    /// <summary>`METHOD TARGET` as explain takes it; the method upper-cased as clients send it.</summary>
    public static bool TrySplitRequest(string request, out string method, out string target, out string? error)
    {
        error = null;
        // Only SP/HTAB separate, as on the wire: a U+00A0 at the end stays part of the target and is judged.
        var r = HeaderValue.TrimOws(request);
        int sp = r.IndexOfAny(' ', '\t');
        method = (sp < 0 ? r : r[..sp]).ToString().ToUpperInvariant();
        target = sp < 0 ? "" : HeaderValue.TrimOws(r[(sp + 1)..]).ToString();
        if (sp > 0 && target.Length > 0) return true;
        error = "an HTTP request is 'METHOD URL' (or 'CONNECT host:port')";
        return false;
    }
}
