using System.Runtime.CompilerServices;
using System.Net.Sockets;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Protocols.Http;
using Bastion.Protocols.Http.Codec;
using Bastion.Protocols.Http.Engine;
using Bastion.Protocols.Http.Inspection;
using Bastion.Protocols.Http.Io;
using Bastion.Policy.Canonical;

namespace Bastion.Protocols.HttpProxy;

/// <summary>
/// One client connection to the forward proxy on the HTTP/1.1 engine. Per request: target (absolute-form, or
/// CONNECT's authority, normalised once into the form that is judged and forwarded) → identify
/// (Proxy-Authorization) → decide → resolve and judge every address (SPEC 2.1) → forward through the keep-alive
/// pool of the judged address (or tunnel for CONNECT, or answer Max-Forwards: 0 itself) → relay the response under
/// the response rules → log.
/// Inside an inspected CONNECT tunnel the same session runs over the decrypted stream (<paramref name="tunnelClient"/>),
/// with <paramref name="tunnel"/> naming the origin its requests go to (origin-form targets, judged as https URLs).
/// </summary>
sealed class ForwardSession(ListenerContext ctx, ClientConnection conn, ForwardPools pools, ForwardInspection? inspection = null,
    InspectedOrigin? tunnel = null, Duplex? tunnelClient = null)
    : Http1Session(ctx, conn, tunnelClient ?? Duplex.Over(conn.Socket!))
{
    string? _user;
    string? _target;
    readonly LastString _targetText = new();
    /// <summary>The request target in its one canonical form: what is judged is what is forwarded.</summary>
    readonly CanonicalTarget _canonical = new();
    readonly RequestText _requestText = new();

    static readonly ulong DropToOrigin = HeadWriter.Mask(KnownHeader.Host, KnownHeader.Expect, KnownHeader.Via, KnownHeader.Http2Settings);
    static readonly ulong DropMaxForwards = HeadWriter.Mask(KnownHeader.MaxForwards);

    protected override bool ViaOnAnswers => true;

    protected override string RequestText() => tunnel is null ? $"{Head.Method} {_target}" : $"{Head.Method} {tunnel.Url(_target!)}";

    // The request's configuration and policy, read once (each read looks the listener and its policy up by name).
    ListenerConfig _config = null!;
    Bastion.Policy.CompiledPolicy _policy = null!;

    protected override ValueTask<bool> ServeAsync(Limits limits)
    {
        var runtime = Ctx.Runtime;
        _config = runtime.Listener(Ctx.Name) ?? Ctx.Config;
        _policy = runtime.PolicyFor(_config);
        _target = _targetText.Get(Head.Target);
        BeginRequest();
        // Inside a tunnel the request goes straight to its own method: one async frame less per request.
        return tunnel is not null ? ServeInTunnelAsync(tunnel, limits) : ServeForwardAsync(limits);
    }

    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> ServeForwardAsync(Limits limits)
    {
        var h = Head;
        var framing = h.Framing;
        bool hasBody = framing.HasBody;

        // The target: authority-form for CONNECT, absolute-form for everything else.
        Attrs.ResetRequest();
        Attrs.Source = Conn.Client.Address;
        Attrs.Headers = h;
        if (!h.IsConnect && h.Form != TargetForm.Absolute)
        {
            var why = h.Form == TargetForm.Origin
                ? "this is a forward proxy: the request target must be an absolute URL (http://host/path)"
                : "unsupported or malformed request target";
            return await RejectAsync(400, why, PseudoRules.Protocol, close: true).ConfigureAwait(false);
        }
        // The one canonical form (SPEC 2.1): ambiguous forms are refused unless the listener passes them.
        var targetStatus = HttpAttributes.ProxyTarget(Attrs, h.Method, h.Target, _config, _canonical, out var targetError);
        if (targetStatus != TargetStatus.Ok)
            return await RejectAsync(400, targetError!, targetStatus == TargetStatus.Ambiguous ? PseudoRules.AmbiguousPaths : PseudoRules.Protocol,
                close: true).ConfigureAwait(false);
        if (!h.IsConnect) X!.Request = _requestText.Get(h.Method, _canonical.Url);
        Attrs.Size = framing.Kind == BodyKind.Chunked ? -1 : framing.Length;

        // Identify.
        var config = _config;
        if (config.Authenticate)
        {
            int pa = h.IndexOf(KnownHeader.ProxyAuthorization);
            var auth = await HttpDecisions.AuthenticateAsync(Ctx, pa < 0 ? null : HttpHead.Latin1(h.Value(pa)), Conn.Client.Address, Conn.Aborted).ConfigureAwait(false);
            // A failed login is logged with the name it tried (as Apache's %u and nginx's $remote_user are).
            if (!auth.Ok && auth.Tried is { } tried) X!.User = tried;
            if (!auth.Ok)
                return await RejectAsync(407, auth.Throttled ? auth.Failure! : "proxy authentication required", PseudoRules.Authenticate, close: hasBody || !KeepAlive,
                    extraName: "Proxy-Authenticate", extraValue: "Basic realm=\"bastion\"").ConfigureAwait(false);
            _user = Conn.User = auth.User;
        }
        Attrs.User = _user ?? Conn.User;
        X!.User = Attrs.User;

        // Decide.
        if (config.RefuseConflictingHeaders && _policy.ConflictingHeader(h) is { } conflict)
            return await RejectAsync(400, $"conflicting values of header '{conflict}', which a rule judges", PseudoRules.ConflictingHeaders,
                close: true).ConfigureAwait(false);
        Decision = HttpDecisions.Decide(_policy, Attrs);
        if (!Decision.Allowed)
        {
            // A rule on `sni` may still allow a CONNECT once its ClientHello is read.
            if (h.IsConnect && inspection is not null && TunnelInspection.SniMayAllow(_policy, Decision))
                return await TunnelAsync(limits, provisional: true).ConfigureAwait(false);
            return await RejectAsync(403, Decision.Reason ?? "denied by policy", Decision.RuleName, close: hasBody || !KeepAlive).ConfigureAwait(false);
        }
        if (framing.Kind == BodyKind.Length && framing.Length > limits.MaxRequestBody)
            return await RejectAsync(413, $"request body of {framing.Length} bytes is over the limit of {limits.MaxRequestBody}",
                PseudoRules.MaxRequestBody, close: true).ConfigureAwait(false);

        if (h.IsConnect) return await TunnelAsync(limits).ConfigureAwait(false);

        // Max-Forwards (RFC 9110 §7.6.2): at zero the proxy answers OPTIONS and TRACE itself.
        long maxForwards = -1;
        if (h.Method is "OPTIONS" or "TRACE" && h.IndexOf(KnownHeader.MaxForwards) is int mfi and >= 0)
        {
            maxForwards = HttpChars.ParseDecimal(h.Value(mfi));
            if (maxForwards == 0) return await AnswerMaxForwardsAsync().ConfigureAwait(false);
        }

        // The address connected to is judged too (SPEC 2.1): after DNS, before any byte goes out.
        var c = _canonical;
        var judged = await ResolveJudgedAsync(c.Host!, limits).ConfigureAwait(false);
        if (judged.Denied is { } denied)
        {
            Decision = denied;
            return await RejectAsync(403, denied.Reason ?? "denied by policy", denied.RuleName, close: hasBody || !KeepAlive).ConfigureAwait(false);
        }
        if (!judged.Ok)
            return judged.Error == SocketError.TimedOut
                ? await RejectAsync(504, $"resolving {c.Host} timed out", Decision.RuleName, close: hasBody || !KeepAlive, verdict: Verdict.Allow).ConfigureAwait(false)
                : await RejectAsync(502, $"upstream {c.Authority}: host not found", Decision.RuleName, close: hasBody || !KeepAlive, verdict: Verdict.Allow).ConfigureAwait(false);

        // The request to the origin: its own line in origin-form (the canonical path and query, byte for byte), the
        // client's field lines as they came (less hop-by-hop ones; an upgrade is never forwarded here), Host from
        // the target (RFC 9112 §3.2.2), Via, and our framing.
        var w = UpOut;
        w.Reset();
        w.Append(h.MethodBytes).Append(" "u8).Append(c.PathAndQuery).Append(" HTTP/1.1\r\n"u8);
        w.CopyFields(h, maxForwards > 0 ? DropToOrigin | DropMaxForwards : DropToOrigin);
        w.Append("Host: "u8).Append(c.Authority).CrLf();
        WriteVia(w, h);
        if (maxForwards > 0) w.Field("Max-Forwards"u8, maxForwards - 1);
        w.Framing(framing).CrLf();

        X.Upstream = c.Authority;
        // One pool per judged address: the connection goes where the policy looked, and nowhere else.
        var pool = pools.For(c.Host!, c.Port, c.Scheme == "https", judged.Allowed[0], limits.ConnectTimeout);
        var r = await SendUpstreamAsync(pool, limits).ConfigureAwait(false);
        return await RespondAsync(r, limits, new RelayOptions(_policy, ViaOnResponse: true)).ConfigureAwait(false);
    }

    async ValueTask<bool> AnswerMaxForwardsAsync()
    {
        var h = Head;
        var w = Out;
        w.Reset();
        if (h.Method == "OPTIONS")
        {
            StatusLine(w, 200);
            w.Append("Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH, CONNECT\r\nVia: 1.1 bastion\r\nContent-Length: 0\r\n\r\n"u8);
        }
        else
        {
            // TRACE: echo the request head, less credentials and cookies.
            var echo = new HeadWriter(h.Bytes.Length + 64);
            echo.Append(h.Bytes[..h.FieldsStart]);
            echo.CopyFields(h, HeadWriter.Mask(KnownHeader.Authorization, KnownHeader.ProxyAuthorization, KnownHeader.Cookie),
                keep: HeadWriter.HopByHop & ~HeadWriter.Mask(KnownHeader.ProxyAuthorization));
            StatusLine(w, 200);
            w.Append("Content-Type: message/http\r\nVia: 1.1 bastion\r\n"u8).Field("Content-Length"u8, echo.Length).CrLf();
            w.Append(echo.Written);
        }
        await SendToClientAsync(w.WrittenMemory).ConfigureAwait(false);
        X!.Status = 200;
        X.Allow(Decision.RuleName, "Max-Forwards reached zero: answered by the proxy");
        return KeepAlive;
    }

    /// <param name="provisional">
    /// The CONNECT was denied, but a rule on `sni` may allow it once the ClientHello is read: the tunnel is opened
    /// towards the client only, and the origin is connected after the policy has seen the server name.
    /// </param>
    async ValueTask<bool> TunnelAsync(Limits limits, bool provisional = false)
    {
        var host = Attrs.Host!;
        var port = Attrs.Port;
        Duplex? up = null;
        if (!provisional)
        {
            var (io, status, why) = await ConnectTunnelAsync(host, port, limits).ConfigureAwait(false);
            // 403: every address the name resolved to is denied (ConnectTunnelAsync made that the decision).
            if (io is null)
                return await RejectAsync(status, why!, Decision.RuleName, close: true, verdict: status == 403 ? Verdict.Deny : Verdict.Allow).ConfigureAwait(false);
            up = io;
        }
        var rule = Decision.RuleName;
        await using var upstream = up;
        Conn.Target = Conn.Record.Upstream = X!.Upstream = $"{HostName.ForUrl(host)}:{port}";
        if (!await SendToClientAsync("HTTP/1.1 200 Connection established\r\nVia: 1.1 bastion\r\n\r\n"u8.ToArray()).ConfigureAwait(false)) return false;
        X.Status = 200;

        // With tls_inspection (or rules on `sni`), the ClientHello decides what becomes of the tunnel (and which
        // socket engine it runs on: TunnelInspection).
        if (inspection is not null && (provisional || Ctx.Runtime.Inspection.ContainsKey(Ctx.Name) || TunnelInspection.AsksSni(_policy)))
        {
            var reason = await new TunnelInspection(Ctx, Conn, inspection, pools)
                .RunAsync(Client, up, () => ConnectTunnelAsync(host, port, limits), Attrs, Decision, limits, LogConnect).ConfigureAwait(false);
            if (reason is not null) Conn.Record.Reason = reason;
            return false;
        }
        // The spliced tunnel uses the socket through .NET's own engine from here.
        Client.Io.Detach();
        up!.Detach();
        X.Allow(rule, Decision.Reason);
        CloseExchange();

        // Bytes the client sent right behind the CONNECT head (a TLS ClientHello, pipelined data) go first. Tunnel
        // bytes count towards the connection (its closed line), not the CONNECT line.
        ReadOnlyMemory<byte> early = Client.Count > 0 ? Client.Data.ToArray() : default;
        Client.Clear();
        await SocketRelay.RunAsync(Conn.Socket!, up.Socket!, limits.IdleTimeout, Conn.Record.Counter, early, default, Conn.Aborted).ConfigureAwait(false);
        return false;
    }

    string? _literalHost;
    System.Net.IPAddress[]? _literal;

    /// <summary>
    /// The target's addresses, judged by the address rules (<see cref="Connector.ResolveJudgedAsync"/>). An IP literal
    /// is parsed once per connection rather than once per request (a keep-alive client of one origin asks for the
    /// same host again and again); the rules are asked every time.
    /// </summary>
    ValueTask<JudgedAddresses> ResolveJudgedAsync(string host, Limits limits)
    {
        if (_literal is null || host != _literalHost)
        {
            if (!System.Net.IPAddress.TryParse(host, out var ip))
                return Connector.ResolveJudgedAsync(Ctx.Runtime.Resolver, _policy, Attrs, host, limits.ConnectTimeout, Conn.Aborted);
            _literalHost = host;
            _literal = [ip];
        }
        return new ValueTask<JudgedAddresses>(Connector.Judge(_policy, Attrs, _literal));
    }

    /// <summary>
    /// Resolves a CONNECT target, asks the address rules about every address (SPEC 2.1) and connects to the allowed
    /// ones: the connection (on the epoll engine when it is on: an inspected tunnel stays there, a spliced one is
    /// detached to .NET's), or the status (403 with the denying rule as the decision, 502, 504) and why not.
    /// </summary>
    async Task<(Duplex? Io, int Status, string? Reason)> ConnectTunnelAsync(string host, int port, Limits limits)
    {
        var judged = await ResolveJudgedAsync(host, limits).ConfigureAwait(false);
        if (judged.Denied is { } denied)
        {
            Decision = denied;
            return (null, 403, denied.Reason ?? "denied by policy");
        }
        var addresses = judged.Allowed;
        if (addresses.Length == 0)
            return judged.Error == SocketError.TimedOut ? (null, 504, $"resolving {host} timed out") : (null, 502, $"cannot connect to {host}:{port}: host not found");
        var (io, connected) = await Duplex.ConnectAsync(addresses, port, limits.ConnectTimeout, Conn.Aborted).ConfigureAwait(false);
        if (io is not null) return (io, 200, null);
        if (connected.Error == SocketError.TimedOut) return (null, 504, $"connecting to {host}:{port} timed out");
        var why = connected.Error == SocketError.ConnectionRefused ? "connection refused" : connected.Message ?? connected.Error.ToString();
        return (null, 502, $"cannot connect to {host}:{port}: {why}");
    }

    /// <summary>The CONNECT line, written once the tunnel's fate (spliced, inspected, refused) is known.</summary>
    void LogConnect(int status, string rule, string? reason, Verdict verdict, string tls, string? sni)
    {
        var x = X!;
        x.Status = status;
        x.Tls = tls;
        x.Sni = sni;
        if (verdict == Verdict.Allow) x.Allow(rule, reason);
        else x.Deny(rule, reason);
        CloseExchange();
    }

    /// <summary>
    /// A request inside an inspected tunnel: origin-form (or an https URL of the tunnel's own origin), judged as
    /// https://name/path with the tunnel's name as host and its SNI; the user is the CONNECT's. It goes to the origin
    /// through the tunnel's own pool, whose first connection is the one opened (and verified) during the handshake.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> ServeInTunnelAsync(InspectedOrigin t, Limits limits)
    {
        var h = Head;
        var x = X!;
        x.Tls = "inspected";
        x.Sni = t.Sni;
        Attrs.ResetRequest();
        Attrs.Source = Conn.Client.Address;
        Attrs.Headers = h;
        Attrs.User = x.User = Conn.User;
        int hi = h.IndexOf(KnownHeader.Host);
        if (!TunnelTarget.TryRequest(Attrs, t, h.Method, h.Target, hi >= 0, hi < 0 ? default : h.Value(hi), _canonical, out var url, out var status, out var why, _config))
            return await RejectAsync(status, why!, PseudoRules.Protocol, close: true).ConfigureAwait(false);
        x.Request = _requestText.Get(h.Method, url!);
        var framing = h.Framing;
        Attrs.Size = framing.Kind == BodyKind.Chunked ? -1 : framing.Length;
        // WebSockets (wss:// inside the tunnel) upgrade as on the reverse proxy, and only by a rule that names them.
        var upgrade = RequestedUpgrade();
        Attrs.Upgrade = upgrade;

        if (_config.RefuseConflictingHeaders && _policy.ConflictingHeader(h) is { } conflict)
            return await RejectAsync(400, $"conflicting values of header '{conflict}', which a rule judges", PseudoRules.ConflictingHeaders,
                close: true).ConfigureAwait(false);
        Decision = HttpDecisions.Decide(_policy, Attrs);
        if (Decision.Allowed && upgrade is not null && !_policy.AllowsUpgrade(Decision))
            Decision = Bastion.Policy.Decision.Deny(Decision.RuleName, $"upgrade to {upgrade} needs a rule that allows it (upgrade: {upgrade})");
        if (!Decision.Allowed)
            return await RejectAsync(403, Decision.Reason ?? "denied by policy", Decision.RuleName, close: framing.HasBody || !KeepAlive).ConfigureAwait(false);
        if (framing.Kind == BodyKind.Length && framing.Length > limits.MaxRequestBody)
            return await RejectAsync(413, $"request body of {framing.Length} bytes is over the limit of {limits.MaxRequestBody}",
                PseudoRules.MaxRequestBody, close: true).ConfigureAwait(false);
        if (t.Failure is { } failure || t.Pool is null)
            return await RejectAsync(502, t.Failure ?? "no connection to the origin", Decision.RuleName, close: framing.HasBody, verdict: Verdict.Allow).ConfigureAwait(false);

        long maxForwards = -1;
        if (h.Method is "OPTIONS" or "TRACE" && h.IndexOf(KnownHeader.MaxForwards) is int mfi and >= 0)
        {
            maxForwards = HttpChars.ParseDecimal(h.Value(mfi));
            if (maxForwards == 0) return await AnswerMaxForwardsAsync().ConfigureAwait(false);
        }
        var w = UpOut;
        w.Reset();
        w.Append(h.MethodBytes).Append(" "u8).Append(_canonical.PathAndQuery).Append(" HTTP/1.1\r\n"u8);
        w.CopyFields(h, maxForwards > 0 ? DropToOrigin | DropMaxForwards : DropToOrigin);
        w.Append("Host: "u8).Append(t.Authority).CrLf();
        WriteVia(w, h);
        if (maxForwards > 0) w.Field("Max-Forwards"u8, maxForwards - 1);
        if (upgrade is not null) WriteUpgrade(w, upgrade);
        w.Framing(framing).CrLf();
        x.Upstream = t.Authority;
        var r = await SendUpstreamAsync(t.Pool, limits).ConfigureAwait(false);
        return await RespondAsync(r, limits, new RelayOptions(_policy, ViaOnResponse: true)).ConfigureAwait(false);
    }
}
