using System.Runtime.CompilerServices;
using System.Buffers;
using System.Globalization;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;
using Bastion.Policy.Canonical;
using Bastion.Protocols.Http;
using Bastion.Protocols.Http.Codec;
using Bastion.Protocols.Http.Engine;
using Bastion.Protocols.Http.Io;
using Microsoft.AspNetCore.Http;

namespace Bastion.Protocols.HttpReverse;

/// <summary>
/// One HTTP/1.1 client connection to the reverse proxy (plain, or TLS where ALPN chose http/1.1) on the engine.
/// Per request: the target normalised once (what is judged is what is routed and forwarded) → rate limit → body
/// limit → authenticate → decide → route → balance → forward through the target's keep-alive pool (another target
/// when one cannot be reached and the request has no body) → relay the response under the response rules (or an
/// upgrade a rule named: WebSocket) → log. The same decisions as the HTTP/2 path (<see cref="ReverseHandler"/>),
/// from the same <see cref="ReverseState"/>.
/// </summary>
sealed class ReverseSession : Http1Session, IRouteHeaders
{
    readonly ReverseStates _states;
    readonly bool _tls;
    readonly string _clientIp, _forwardedFor;
    readonly int _localPort;
    readonly string _scheme;
    /// <summary>"http://" or "https://": before an origin-form target in the log's request text.</summary>
    readonly string _schemePrefix;
    string? _hostHeader;
    readonly LastString _hostText = new(), _hostName = new();
    /// <summary>The client's address as the rules see it (IPv4-mapped addresses as IPv4).</summary>
    readonly System.Net.IPAddress _source;
    /// <summary>The last request's log text and what it was made from: the same request again reuses it.</summary>
    readonly RequestText _requestText = new();
    /// <summary>The request target in its one canonical form: what is judged, routed and forwarded.</summary>
    readonly CanonicalTarget _canonical = new();

    static readonly ulong DropToUpstream = HeadWriter.Mask(KnownHeader.Host, KnownHeader.Via, KnownHeader.Expect,
        KnownHeader.XForwardedFor, KnownHeader.XForwardedProto, KnownHeader.XForwardedHost, KnownHeader.Forwarded,
        KnownHeader.XRealIp, KnownHeader.Http2Settings);
    static readonly ulong DropAuthorization = HeadWriter.Mask(KnownHeader.Authorization);

    public ReverseSession(ListenerContext ctx, ClientConnection conn, ReverseStates states, Duplex client, bool tls)
        : base(ctx, conn, client)
    {
        _states = states;
        _tls = tls;
        _scheme = tls ? "https" : "http";
        _schemePrefix = tls ? "https://" : "http://";
        var ip = conn.Client.Address;
        if (ip.IsIPv4MappedToIPv6) ip = ip.MapToIPv4();
        _source = ip;
        _clientIp = ip.ToString();
        // A Forwarded `for=` node: IPv6 quoted in brackets (RFC 7239 §6).
        _forwardedFor = ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"\"[{_clientIp}]\"" : _clientIp;
        // The port the client dialled: the PROXY header's destination when a trusted front sent one.
        _localPort = conn.ProxyHeader?.Destination?.Port ?? conn.Local?.Port ?? 0;
    }

    protected override bool UpstreamsAreInternal => true;

    protected override string RequestText() => $"{Head.Method} {_scheme}://{_hostHeader}{HttpHead.Latin1(Head.PathAndQuery)}";

    /// <summary>
    /// Not an async method: every step up to forwarding is synchronous unless the listener authenticates, so the
    /// common request hands its <see cref="ForwardAsync"/> (or a rejection) straight back: one async frame less.
    /// </summary>
    protected override ValueTask<bool> ServeAsync(Limits _)
    {
        var st = _states.Current();
        var cfg = st.Config;
        var limits = cfg.Limits;
        var h = Head;
        var a = Attrs;

        // What the request is for: the authority (absolute-form target, else Host) and the target, normalised.
        _hostHeader = h.Authority.IsEmpty ? "" : _hostText.Get(h.Authority);
        BeginRequest();
        if (h.Form is TargetForm.Asterisk or TargetForm.Authority)
            return RejectAsync(400, "a reverse proxy serves origin-form and absolute-form targets", PseudoRules.Protocol, close: true);

        a.ResetRequest();
        a.Source = _source;
        a.Headers = h;
        var targetStatus = HttpAttributes.OriginTarget(a, h.Method, _scheme, h.Host.IsEmpty ? null : _hostName.Get(h.Host), h.Port < 0 ? null : h.Port,
            h.PathAndQuery, _localPort, cfg, _canonical, st.NeedsUrl, out var targetError);
        if (targetStatus != TargetStatus.Ok)
            return RejectAsync(400, targetError!, targetStatus == TargetStatus.Ambiguous ? PseudoRules.AmbiguousPaths : PseudoRules.Protocol,
                close: true);
        X!.Request = LogText(h.Method);
        // An upgrade (less h2c, never forwarded) is asked for before the rules, so that `upgrade:` can name it.
        var upgrade = RequestedUpgrade();
        a.Upgrade = upgrade;
        var framing = h.Framing;

        if (st.Rate is { } rate && !rate.TryTake(a.Source, out var retryAfter))
            return RejectAsync(429, "request rate limit exceeded", PseudoRules.Rate, close: framing.HasBody,
                extraName: "Retry-After", extraValue: retryAfter.ToString(CultureInfo.InvariantCulture));
        if (framing.Kind == BodyKind.Length && framing.Length > limits.MaxRequestBody)
            return RejectAsync(413, $"request body over {limits.MaxRequestBody} bytes", PseudoRules.MaxRequestBody, close: true);

        if (cfg.Authenticate) return AuthenticateThenDecideAsync(st, limits, upgrade);
        if (Conn.User is { } fromFront) a.User = fromFront;   // a verified client certificate name from a trusted PROXY v2 front
        return DecideAndForward(st, limits, upgrade, stripAuthorization: false);
    }

    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> AuthenticateThenDecideAsync(ReverseState st, Limits limits, string? upgrade)
    {
        var h = Head;
        var a = Attrs;
        int ai = h.IndexOf(KnownHeader.Authorization);
        var auth = await HttpDecisions.AuthenticateAsync(Ctx, ai < 0 ? null : HttpHead.Latin1(h.Value(ai)), a.Source, Conn.Aborted).ConfigureAwait(false);
        // A failed login is logged with the name it tried (as Apache's %u and nginx's $remote_user are).
        if (!auth.Ok && auth.Tried is { } tried) X!.User = tried;
        if (!auth.Ok)
            return await RejectAsync(401, auth.Failure!, PseudoRules.Authenticate, close: h.Framing.HasBody,
                extraName: "WWW-Authenticate", extraValue: "Basic realm=\"bastion\", charset=\"UTF-8\"").ConfigureAwait(false);
        a.User = auth.User;
        Conn.User = auth.User;
        return await DecideAndForward(st, limits, upgrade, stripAuthorization: true).ConfigureAwait(false);
    }

    /// <summary>The rules, then the route, then <see cref="ForwardAsync"/>; the caller has set who the user is.</summary>
    ValueTask<bool> DecideAndForward(ReverseState st, Limits limits, string? upgrade, bool stripAuthorization)
    {
        var cfg = st.Config;
        var h = Head;
        var a = Attrs;
        var framing = h.Framing;
        X!.User = a.User;

        if (cfg.RefuseConflictingHeaders && st.Policy.ConflictingHeader(h) is { } conflict)
            return RejectAsync(400, $"conflicting values of header '{conflict}', which a rule judges", PseudoRules.ConflictingHeaders,
                close: true);
        Decision = HttpDecisions.Decide(st.Policy, a);
        // An upgrade turns the connection into a tunnel the policy no longer sees: only a rule that names it allows it.
        if (Decision.Allowed && upgrade is not null && !st.Policy.AllowsUpgrade(Decision))
            Decision = Bastion.Policy.Decision.Deny(Decision.RuleName, $"upgrade to {upgrade} needs a rule that allows it (upgrade: {upgrade})");
        if (!Decision.Allowed)
            return RejectAsync(403, Decision.Reason ?? "denied by policy", Decision.RuleName, close: framing.HasBody);

        // Routes see the path the rules judged, in the same case mode.
        var route = st.Routes.Match(a.Host, h.Method, a.Path!, this);
        if (route is null)
            return RejectAsync(404, $"no route for {_hostHeader}{_canonical.Path}", Decision.RuleName, close: framing.HasBody, verdict: Verdict.Allow,
                logReason: "no route");
        return ForwardAsync(st, route, limits, stripAuthorization, upgrade);
    }

    /// <summary>`METHOD url` for the log, from the canonical target; a keep-alive client asking for the same URL again gets the same string.</summary>
    string LogText(string method)
    {
        var c = _canonical;
        return c.Host is null ? _requestText.Get(method, c.PathAndQuery, _schemePrefix) : _requestText.Get(method, c.Url);
    }

    /// <summary>Balance, build the upstream's head, send; another target when one cannot be reached and nothing was sent.</summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> ForwardAsync(ReverseState st, CompiledRoute route, Limits limits, bool stripAuthorization, string? upgrade)
    {
        var group = route.Upstream;
        bool retriable = !Head.Framing.HasBody;
        string? reason = null;
        for (int attempt = 0; ; attempt++)
        {
            var target = group.Pick();
            if (target is null)
            {
                // The page says no more than that; the log names the group and the last failure.
                group.Set.Unavailable();
                return await RejectAsync(503, "no healthy upstream server", Decision.RuleName, close: Head.Framing.HasBody, verdict: Verdict.Allow,
                    logReason: reason is null ? $"no healthy upstream in '{group.Name}'" : $"no healthy upstream in '{group.Name}' ({reason})").ConfigureAwait(false);
            }
            X!.ServedBy(target);
            WriteUpstreamHead(st, route, group, target, stripAuthorization, upgrade);
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
            else if (r.End is not (Http.Upstream.UpstreamEnd.ConnectFailed or Http.Upstream.UpstreamEnd.ClientBodyFailed))
                target.Failed(timedOut: r.End == Http.Upstream.UpstreamEnd.TimedOut);
            return again;
        }
    }

    /// <summary>
    /// The request line with the upstream's path (route prefixes and the target's base path on the canonical path,
    /// then the canonical query, byte for byte), the client's field lines as received less hop-by-hop ones, then Host
    /// (the upstream's own name, as YARP and nginx send by default), X-Forwarded-For/-Proto/-Host, Forwarded,
    /// X-Real-IP, Via, the upgrade a rule allowed, and the framing.
    /// </summary>
    void WriteUpstreamHead(ReverseState st, CompiledRoute route, UpstreamGroup group, UpstreamTarget target, bool stripAuthorization, string? upgrade)
    {
        var h = Head;
        var c = _canonical;
        var w = UpOut;
        w.Reset();
        w.Append(h.MethodBytes).Append(" "u8);
        w.Append(group.BasePath(target)).Append(route.UpstreamPath(c.Path)).Append(c.Query);
        w.Append(" HTTP/1.1\r\n"u8);
        w.CopyFields(h, stripAuthorization ? DropToUpstream | DropAuthorization : DropToUpstream);
        // The target's own name by default; the client's with preserve_host (a request without Host has none to keep).
        if (route.PreserveHost && !h.Authority.IsEmpty) w.Append("Host: "u8).Append(h.Authority).CrLf();
        else w.Append("Host: "u8).Append(group.Authority(target)).CrLf();

        var peer = Conn.Client.Address;
        bool trusted = st.TrustedProxies.Count > 0 && st.TrustedProxies.Contains(peer.IsIPv4MappedToIPv6 ? peer.MapToIPv4() : peer);
        Forwarded(w, "X-Forwarded-For: "u8, KnownHeader.XForwardedFor, trusted).Append(_clientIp).CrLf();
        Forwarded(w, "X-Forwarded-Proto: "u8, KnownHeader.XForwardedProto, trusted).Append(_scheme).CrLf();
        if (_hostHeader!.Length > 0) Forwarded(w, "X-Forwarded-Host: "u8, KnownHeader.XForwardedHost, trusted).Append(_hostHeader).CrLf();
        // RFC 7239 Forwarded and X-Real-IP say the same thing and are trusted the same way.
        Forwarded(w, "Forwarded: "u8, KnownHeader.Forwarded, trusted).Append("for="u8).Append(_forwardedFor).Append(";proto="u8).Append(_scheme);
        if (_hostHeader.Length > 0) w.Append(";host=\""u8).Append(_hostHeader).Append("\""u8);
        w.CrLf();
        int real = trusted ? h.IndexOf(KnownHeader.XRealIp) : -1;
        if (real >= 0 && !h.Value(real).IsEmpty) w.Field("X-Real-IP"u8, h.Value(real));
        else w.Field("X-Real-IP"u8, _clientIp);
        if (st.Config.Via)
        {
            w.Append("Via: "u8);
            for (int i = h.IndexOf(KnownHeader.Via); i >= 0; i = h.IndexOf(KnownHeader.Via, i + 1))
                if (!h.Value(i).IsEmpty) w.Append(h.Value(i)).Append(", "u8);
            w.Append(h.MinorVersion == 0 ? "1.0 bastion\r\n"u8 : "1.1 bastion\r\n"u8);
        }
        if (upgrade is not null) WriteUpgrade(w, upgrade);
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

    /// <summary>Route `headers:` conditions: every field line with the name, each on its own.</summary>
    public bool AnyValue(string name, StringPattern pattern)
    {
        var h = Head;
        for (int i = 0; i < h.FieldCount; i++)
            if (HttpChars.EqualsIgnoreCase(h.Name(i), name) && pattern.IsMatch(HttpHead.Latin1(h.Value(i)))) return true;
        return false;
    }
}
