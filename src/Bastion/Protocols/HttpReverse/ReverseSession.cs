using System.Buffers;
using System.Globalization;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;
using Bastion.Protocols.Http;
using Bastion.Protocols.Http.Codec;
using Bastion.Protocols.Http.Engine;
using Bastion.Protocols.Http.Io;
using Microsoft.AspNetCore.Http;

namespace Bastion.Protocols.HttpReverse;

/// <summary>
/// One HTTP/1.1 client connection to the reverse proxy (plain, or TLS where ALPN chose http/1.1) on the engine.
/// Per request: rate limit → body limit → authenticate → decide → route → balance → forward through the target's
/// keep-alive pool (another target when one cannot be reached and the request has no body) → relay the response
/// under the response rules (or an upgrade: WebSocket) → log. The same decisions as the HTTP/2 path
/// (<see cref="ReverseHandler"/>), from the same <see cref="ReverseState"/>.
/// </summary>
sealed class ReverseSession : Http1Session, IRouteHeaders
{
    readonly ReverseStates _states;
    readonly bool _tls;
    readonly string _clientIp;
    readonly int _localPort;
    readonly string _scheme;
    string? _hostHeader;
    string? _path;
    ReadOnlyMemory<byte> _query;
    // The last raw path and its decoded form: keep-alive clients often ask for the same path again.
    byte[] _lastRawPath = [];
    string? _lastPath;

    static readonly ulong DropToUpstream = HeadWriter.Mask(KnownHeader.Host, KnownHeader.Via, KnownHeader.Expect,
        KnownHeader.XForwardedFor, KnownHeader.XForwardedProto, KnownHeader.XForwardedHost);
    static readonly ulong DropAuthorization = HeadWriter.Mask(KnownHeader.Authorization);

    public ReverseSession(ListenerContext ctx, ClientConnection conn, ReverseStates states, Duplex client, bool tls)
        : base(ctx, conn, client)
    {
        _states = states;
        _tls = tls;
        _scheme = tls ? "https" : "http";
        var ip = conn.Client.Address;
        if (ip.IsIPv4MappedToIPv6) ip = ip.MapToIPv4();
        _clientIp = ip.ToString();
        // The port the client dialled: the PROXY header's destination when a trusted front sent one.
        _localPort = conn.ProxyHeader?.Destination?.Port ?? conn.Local?.Port ?? 0;
    }

    protected override string RequestText() => $"{Head.Method} {_scheme}://{_hostHeader}{_path}{HttpHead.Latin1(_query.Span)}";

    protected override async ValueTask<bool> ServeAsync(Limits _)
    {
        var st = _states.Current();
        var cfg = st.Config;
        var limits = cfg.Limits;
        var h = Head;
        var a = Attrs;

        // What the request is for: the authority (absolute-form target, else Host) and the decoded path.
        _hostHeader = h.Authority.IsEmpty ? "" : HttpHead.Latin1(h.Authority);
        var pq = h.PathAndQuery;
        int q = pq.IndexOf((byte)'?');
        var rawPath = q < 0 ? pq : pq[..q];
        _query = q < 0 ? ReadOnlyMemory<byte>.Empty : pq[q..].ToArray();
        _path = DecodePath(rawPath);
        BeginRequest();
        if (h.Form is TargetForm.Asterisk or TargetForm.Authority)
            return await RejectAsync(400, "a reverse proxy serves origin-form and absolute-form targets", PseudoRules.Protocol, close: true).ConfigureAwait(false);
        if (_path is null)
        {
            _path = HttpHead.Latin1(rawPath);
            return await RejectAsync(400, "invalid percent-encoding or UTF-8 in the path", PseudoRules.Protocol, close: true).ConfigureAwait(false);
        }

        a.ResetRequest();
        a.Source = Conn.Client.Address.IsIPv4MappedToIPv6 ? Conn.Client.Address.MapToIPv4() : Conn.Client.Address;
        var host = h.Host;
        if (host.Length > 1 && host[0] == (byte)'[') host = host[1..^1];
        HttpAttributes.Origin(a, h.Method, _scheme, _hostHeader, HttpHead.Latin1(host), _path, HttpHead.Latin1(_query.Span), _localPort, st.NeedsUrl);
        a.Headers = h;
        var framing = h.Framing;

        if (st.Rate is { } rate && !rate.TryTake(a.Source, out var retryAfter))
            return await RejectAsync(429, "request rate limit exceeded", PseudoRules.Rate, close: framing.HasBody,
                extraName: "Retry-After", extraValue: retryAfter.ToString(CultureInfo.InvariantCulture)).ConfigureAwait(false);
        if (framing.Kind == BodyKind.Length && framing.Length > limits.MaxRequestBody)
            return await RejectAsync(413, $"request body over {limits.MaxRequestBody} bytes", PseudoRules.MaxRequestBody, close: true).ConfigureAwait(false);

        bool stripAuthorization = false;
        if (cfg.Authenticate)
        {
            int ai = h.IndexOf(KnownHeader.Authorization);
            var auth = await HttpDecisions.AuthenticateAsync(Ctx, ai < 0 ? null : HttpHead.Latin1(h.Value(ai)), Conn.Aborted).ConfigureAwait(false);
            // A failed login is logged with the name it tried (as Apache's %u and nginx's $remote_user are).
            if (!auth.Ok && auth.Tried is { } tried) X!.User = tried;
            if (!auth.Ok)
                return await RejectAsync(401, auth.Failure!, PseudoRules.Authenticate, close: framing.HasBody,
                    extraName: "WWW-Authenticate", extraValue: "Basic realm=\"bastion\", charset=\"UTF-8\"").ConfigureAwait(false);
            a.User = auth.User;
            Conn.User = auth.User;
            stripAuthorization = true;
        }
        else if (Conn.User is { } fromFront) a.User = fromFront;   // a verified client certificate name from a trusted PROXY v2 front
        X!.User = a.User;

        Decision = HttpDecisions.Decide(st.Policy, a);
        if (!Decision.Allowed)
            return await RejectAsync(403, Decision.Reason ?? "denied by policy", Decision.RuleName, close: framing.HasBody).ConfigureAwait(false);

        var route = st.Routes.Match(a.Host, h.Method, _path, this);
        if (route is null)
            return await RejectAsync(404, $"no route for {_hostHeader}{_path}", Decision.RuleName, close: framing.HasBody, verdict: Verdict.Allow,
                logReason: "no route").ConfigureAwait(false);
        return await ForwardAsync(st, route, limits, stripAuthorization).ConfigureAwait(false);
    }

    /// <summary>Balance, build the upstream's head, send; another target when one cannot be reached and nothing was sent.</summary>
    async ValueTask<bool> ForwardAsync(ReverseState st, CompiledRoute route, Limits limits, bool stripAuthorization)
    {
        var group = route.Upstream;
        bool retriable = !Head.Framing.HasBody;
        string? reason = null;
        for (int attempt = 0; ; attempt++)
        {
            var target = group.Pick();
            if (target is null)
                return await RejectAsync(503, reason is null ? $"no healthy upstream in '{group.Name}'" : $"no healthy upstream in '{group.Name}' ({reason})",
                    Decision.RuleName, close: Head.Framing.HasBody, verdict: Verdict.Allow).ConfigureAwait(false);
            X!.Upstream = target.Prefix;
            WriteUpstreamHead(st, route, group, target, stripAuthorization);
            target.Begin();
            Http.Upstream.UpstreamResult r;
            try { r = await SendUpstreamAsync(group.PoolFor(target), limits).ConfigureAwait(false); }
            finally { target.End(); }
            if (r.End == Http.Upstream.UpstreamEnd.ConnectFailed)
            {
                group.ConnectFailed(target);
                reason = r.Error;
                if (retriable && attempt + 1 < group.Targets.Length) continue;
            }
            bool again = await RespondAsync(r, limits, new RelayOptions(st.Policy, ViaOnResponse: false)).ConfigureAwait(false);
            if (r.End == Http.Upstream.UpstreamEnd.Response) group.Answered(target, X.Status);
            return again;
        }
    }

    /// <summary>
    /// The request line with the upstream's path (route prefixes, the target's base path), the client's field lines
    /// as received less hop-by-hop ones, then Host (the upstream's own name, as YARP and nginx send by default),
    /// X-Forwarded-For/-Proto/-Host, Via, and the framing.
    /// </summary>
    void WriteUpstreamHead(ReverseState st, CompiledRoute route, UpstreamGroup group, UpstreamTarget target, bool stripAuthorization)
    {
        var h = Head;
        var w = UpOut;
        w.Reset();
        w.Append(h.MethodBytes).Append(" "u8);
        var basePath = group.BasePath(target);
        if (basePath.Length == 0 && route.StripPrefix is null && route.RewritePrefix is null && PlainPath(h.PathAndQuery, _path!))
            w.Append(h.PathAndQuery[0] == (byte)'?' ? "/"u8 : default).Append(h.PathAndQuery);
        else
        {
            var path = route.UpstreamPath(new PathString(_path));
            w.Append(basePath).Append(path.ToUriComponent()).Append(_query.Span);
        }
        w.Append(" HTTP/1.1\r\n"u8);
        bool upgrade = h.Upgrade;
        w.CopyFields(h, stripAuthorization ? DropToUpstream | DropAuthorization : DropToUpstream, keep: upgrade ? UpgradeMask : 0);
        w.Append("Host: "u8).Append(target.Uri.Authority).CrLf();

        var peer = Conn.Client.Address;
        bool trusted = st.TrustedProxies.Count > 0 && st.TrustedProxies.Contains(peer.IsIPv4MappedToIPv6 ? peer.MapToIPv4() : peer);
        Forwarded(w, "X-Forwarded-For: "u8, KnownHeader.XForwardedFor, trusted).Append(_clientIp).CrLf();
        Forwarded(w, "X-Forwarded-Proto: "u8, KnownHeader.XForwardedProto, trusted).Append(_scheme).CrLf();
        if (_hostHeader!.Length > 0) Forwarded(w, "X-Forwarded-Host: "u8, KnownHeader.XForwardedHost, trusted).Append(_hostHeader).CrLf();
        if (st.Config.Via)
        {
            w.Append("Via: "u8);
            for (int i = h.IndexOf(KnownHeader.Via); i >= 0; i = h.IndexOf(KnownHeader.Via, i + 1))
                if (!h.Value(i).IsEmpty) w.Append(h.Value(i)).Append(", "u8);
            w.Append(h.MinorVersion == 0 ? "1.0 bastion\r\n"u8 : "1.1 bastion\r\n"u8);
        }
        if (upgrade) w.Append("Connection: upgrade\r\n"u8);
        w.Framing(h.Framing).CrLf();
    }

    /// <summary>A trusted front's values come first; anyone else's are replaced, so clients cannot forge them.</summary>
    HeadWriter Forwarded(HeadWriter w, ReadOnlySpan<byte> name, KnownHeader id, bool trusted)
    {
        w.Append(name);
        if (!trusted) return w;
        var h = Head;
        for (int i = h.IndexOf(id); i >= 0; i = h.IndexOf(id, i + 1))
            if (!h.Value(i).IsEmpty) w.Append(h.Value(i)).Append(", "u8);
        return w;
    }

    /// <summary>The raw path can go upstream as it came: nothing was decoded or normalised, nothing needs escaping.</summary>
    static bool PlainPath(ReadOnlySpan<byte> pathAndQuery, string decoded)
    {
        int q = pathAndQuery.IndexOf((byte)'?');
        var raw = q < 0 ? pathAndQuery : pathAndQuery[..q];
        return raw.Length == decoded.Length && raw.IndexOfAnyExcept(PathChars) < 0;
    }

    // pchar and '/' (RFC 3986): what PathString leaves unescaped.
    static readonly SearchValues<byte> PathChars = SearchValues.Create(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/"u8);

    string? DecodePath(ReadOnlySpan<byte> raw)
    {
        if (_lastPath is not null && raw.SequenceEqual(_lastRawPath)) return _lastPath;
        var decoded = raw.IsEmpty ? "/" : OriginPath.Decode(raw);
        if (decoded is not null && raw.Length <= 256)
        {
            _lastRawPath = raw.ToArray();
            _lastPath = decoded;
        }
        return decoded;
    }

    /// <summary>Route `headers:` conditions: every field line with the name, each on its own.</summary>
    public bool AnyValue(string name, StringPattern pattern)
    {
        var h = Head;
        for (int i = 0; i < h.FieldCount; i++)
            if (HttpChars.EqualsIgnoreCase(h.Name(i), name) && pattern.IsMatch(HttpHead.Latin1(h.Value(i)))) return true;
        return false;
    }
}
