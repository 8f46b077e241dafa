using System.Runtime.CompilerServices;
using System.Text;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;
using Bastion.Protocols.Http.Codec;
using Bastion.Protocols.Http.Io;
using Bastion.Protocols.Http.Upstream;

namespace Bastion.Protocols.Http.Engine;

/// <summary>
/// One client connection served by the HTTP/1.1 engine, as a loop of exchanges: read a head (strict codec) →
/// <see cref="ServeAsync"/> (the listener type decides, routes and forwards) → the next head, while keep-alive
/// holds. The base owns the client's buffer, the heads, the deadline (header, idle) and the shared steps: the
/// gateway's own answers, and relaying an upstream response (response rules, head from the upstream's bytes with
/// only hop-by-hop changes, the body in constant memory). Each exchange writes one log line through its
/// <see cref="Exchange"/>.
/// </summary>
public abstract class Http1Session : Expiring
{
    protected readonly ListenerContext Ctx;
    protected readonly ClientConnection Conn;
    protected readonly Peer Client;
    protected readonly RequestHead Head = new();
    protected readonly RequestAttributes Attrs = new();
    /// <summary>Heads to the client (answers, relayed responses).</summary>
    protected readonly HeadWriter Out = new();
    /// <summary>The request head to the upstream.</summary>
    protected readonly HeadWriter UpOut = new();

    /// <summary>The current exchange's record (its access-log line).</summary>
    protected Exchange? X;
    /// <summary>Whether the client connection stays open after this exchange.</summary>
    protected bool KeepAlive;
    /// <summary>The decision that let the current request through (its rule goes on the log line).</summary>
    protected Decision Decision;
    /// <summary>
    /// The protocols this request's upgrade was forwarded with (<see cref="WriteUpgrade"/>), or null: a 101 is relayed
    /// only when it switches to one of them.
    /// </summary>
    protected string? ForwardedUpgrade;

    int _phase;          // Phase: what the deadline means now
    bool _timedOut;
    int _exchanges;
    CancellationTokenRegistration _drain, _abort;

    const int Idle = 0, ReadingHead = 1, Busy = 2;

    protected Http1Session(ListenerContext ctx, ClientConnection conn, Duplex client)
    {
        Ctx = ctx;
        Conn = conn;
        Client = new Peer(client);
    }

    /// <summary>"1.1 bastion" on the requests (and for the forward proxy the responses) that cross.</summary>
    protected static ReadOnlySpan<byte> ViaToken => "1.1 bastion"u8;

    public async Task RunAsync()
    {
        Deadlines.Add(this);
        // A stopping gateway closes connections that wait for their next request; busy ones finish first.
        _drain = Conn.Draining.UnsafeRegister(static s =>
        {
            var self = (Http1Session)s!;
            if (Volatile.Read(ref self._phase) == Idle) self.Client.Io.ShutdownReceive();
        }, this);
        // An aborted connection (drain deadline, the admin API) is cut at once.
        _abort = Conn.Aborted.UnsafeRegister(static s => ((Http1Session)s!).Client.Io.Abort(), this);
        // Bytes a PROXY header reader left in the transport's pipe belong to the first request.
        if (Conn.Transport.HasInputPipe && Conn.Transport.TakeBuffered() is { IsEmpty: false } early) Client.Append(early.Span);
        try
        {
            while (true)
            {
                var limits = Ctx.Config.Limits;
                // The head is read here, not in a method of its own: one async frame less per request.
                var step = StartHead(limits, out var headError);
                while (step == HeadStep.NeedBytes)
                {
                    int n;
                    try { n = await Client.ReceiveAsync().ConfigureAwait(false); }
                    catch (Exception e) when (Duplex.IsIoError(e)) { n = 0; }
                    step = n > 0 ? TryHead(limits, out headError) : HeadStep.Ended;
                }
                if (step != HeadStep.Complete)
                {
                    await HeadFailedAsync(step, headError).ConfigureAwait(false);
                    CloseExchange();
                    break;
                }
                _exchanges++;
                Volatile.Write(ref _phase, Busy);
                NoDeadline();
                bool again;
                try { again = await ServeAsync(limits).ConfigureAwait(false); }
                finally
                {
                    CloseExchange();
                    // Between requests the connection holds no buffer (Peer gives its own back when drained).
                    Out.Release();
                    UpOut.Release();
                }
                if (!again || !KeepAlive) break;
            }
        }
        finally
        {
            _drain.Dispose();
            _abort.Dispose();
            Deadlines.Remove(this);
            await OnClosedAsync().ConfigureAwait(false);
            Client.Io.Detach();
            Client.Release();
            Out.Release();
            UpOut.Release();
            Conn.Record.Request = _exchanges == 1 && X?.Request is { } only ? only : $"{_exchanges} requests";
        }
    }

    /// <summary>Handles one parsed request in <see cref="Head"/>. Returns whether the connection may serve another.</summary>
    protected abstract ValueTask<bool> ServeAsync(Limits limits);

    /// <summary>The connection is ending (release what the session holds).</summary>
    protected virtual ValueTask OnClosedAsync() => ValueTask.CompletedTask;

    protected internal override void Expired()
    {
        _timedOut = true;
        Client.Io.ShutdownReceive();
    }

    Exchange? _record;

    /// <summary>The record of the next request: the connection's one record, reopened (or a new one while it is still open).</summary>
    Exchange NextExchange() =>
        _record is { IsClosed: true } done ? done.Reopen() : _record = Ctx.Open(Conn, ExchangeKinds.Request);

    enum HeadStep : byte { NeedBytes, Complete, Invalid, Ended }

    /// <summary>Readies the connection for its next request head and looks at what is buffered already.</summary>
    HeadStep StartHead(Limits limits, out HttpError error)
    {
        X = null;
        _begun = false;
        Decision = default;
        ForwardedUpgrade = null;
        _timedOut = false;
        Volatile.Write(ref _phase, Idle);
        // Between keep-alive requests the idle timeout applies; once a byte arrives, the header timeout.
        ExpireIn(_exchanges == 0 ? limits.HeaderTimeout : limits.IdleTimeout);
        if (Conn.Draining.IsCancellationRequested && Client.Count == 0)
        {
            error = default;
            return HeadStep.Ended;
        }
        return TryHead(limits, out error);
    }

    /// <summary>Parses the request head from what the client sent so far (strict codec).</summary>
    HeadStep TryHead(Limits limits, out HttpError error)
    {
        error = default;
        if (Client.Count == 0) return HeadStep.NeedBytes;
        if (X is null)
        {
            X = NextExchange();
            Volatile.Write(ref _phase, ReadingHead);
            if (_exchanges > 0) ExpireIn(limits.HeaderTimeout);
        }
        int maxHead = limits.MaxHeaderSize;
        var r = RequestParser.TryParse(Client.Data, Head, maxHead, out int consumed, out error);
        if (r == ParseResult.Complete)
        {
            Client.Consume(consumed);
            X.AddIn(consumed);
            return HeadStep.Complete;
        }
        if (r == ParseResult.Invalid) return HeadStep.Invalid;
        if (Client.Count >= Client.Capacity) Client.Grow(maxHead + 4096);
        return HeadStep.NeedBytes;
    }

    /// <summary>No request head: a malformed one (400), the client gone or idle too long (408 once a byte came).</summary>
    async ValueTask HeadFailedAsync(HeadStep step, HttpError error)
    {
        if (step == HeadStep.Invalid)
        {
            X!.Request = "(malformed request)";
            await RejectAsync(error.Status, error.Reason, PseudoRules.Protocol, close: true).ConfigureAwait(false);
            return;
        }
        if (X is null) return;
        if (_timedOut)
        {
            // Slow or stalled head (slowloris): answer 408 and close.
            X.Request = "(request head timeout)";
            await RejectAsync(408, "request head not received in time", PseudoRules.HeaderTimeout, close: true).ConfigureAwait(false);
            return;
        }
        if (Client.Data.IndexOfAnyExcept("\r\n"u8) >= 0)
        {
            X.Request = "(incomplete request)";
            X.Status = 400;
            X.Deny(PseudoRules.Protocol, "connection closed in the middle of a request head");
        }
        else X = null;  // empty lines only: nothing to log
    }

    /// <summary>The keep-alive rule for the request just parsed (HTTP/1.1 unless close; HTTP/1.0 only with keep-alive).</summary>
    protected void BeginRequest()
    {
        KeepAlive = !Head.Close;
        var x = X!;
        // The request's text is made when the record closes, unless the listener type sets its canonical form first.
        x.Request = null;
        _begun = true;
        // For the combined and template log formats.
        x.Protocol = Head.MinorVersion == 1 ? "HTTP/1.1" : "HTTP/1.0";
        int i = Head.IndexOf("Referer");
        x.Referer = i < 0 ? null : _referer.Get(Head.Value(i));
        i = Head.IndexOf("User-Agent");
        x.UserAgent = i < 0 ? null : _userAgent.Get(Head.Value(i));
    }

    readonly LastString _referer = new(), _userAgent = new(), _contentType = new();
    bool _begun;

    /// <summary>Closes the current record (its log line), with the request's text when nothing more exact was set.</summary>
    protected void CloseExchange()
    {
        if (X is not { } x) return;
        if (_begun && x.Request is null && !x.IsClosed) x.Request = RequestText();
        x.Close();
    }

    /// <summary>How the request appears in the log: `METHOD target`.</summary>
    protected virtual string RequestText() => $"{Head.Method} {HttpHead.Latin1(Head.Target)}";

    // ------------------------------------------------------------------ the gateway's own answers

    /// <summary>
    /// Answers with the gateway's own page (4xx, 5xx), logs it, and says whether the connection may go on.
    /// <paramref name="extra"/> adds header fields (WWW-Authenticate, Retry-After...).
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    protected async ValueTask<bool> RejectAsync(int status, string reason, string rule, bool close, Verdict verdict = Verdict.Deny,
        string? extraName = null, string? extraValue = null, string? logReason = null)
    {
        X ??= NextExchange();
        if (close) KeepAlive = false;
        // A denial names its rule on the page; a failure (502, 504) does not.
        var page = Encoding.UTF8.GetBytes(ErrorPages.Html(status, reason, X.Id, verdict == Verdict.Deny && rule != PseudoRules.Protocol ? rule : null));
        var w = Out;
        w.Reset();
        StatusLine(w, status);
        w.Append("Content-Type: "u8).Append(ErrorPages.ContentType).CrLf()
            .Field("Content-Length"u8, page.Length)
            .Field("X-Bastion-Request-Id"u8, X.Id)
            .Append("Cache-Control: no-store\r\n"u8);
        if (ViaOnAnswers) w.Append("Via: "u8).Append(ViaToken).CrLf();
        if (extraName is not null) w.Append(extraName).Append(": "u8).Append(extraValue!).CrLf();
        w.Append(KeepAlive ? "Connection: keep-alive\r\n\r\n"u8 : "Connection: close\r\n\r\n"u8);
        if (!Head.IsHead) w.Append(page);
        await SendToClientAsync(w.WrittenMemory).ConfigureAwait(false);
        X.Status = status;
        X.ContentType = ErrorPages.ContentType;
        if (verdict == Verdict.Allow) X.Allow(rule, logReason ?? reason);
        else X.Deny(rule, logReason ?? reason);
        return KeepAlive;
    }

    /// <summary>Whether the gateway's own answers carry Via (the forward proxy's do).</summary>
    protected virtual bool ViaOnAnswers => false;

    protected static void StatusLine(HeadWriter w, int status)
    {
        w.Append("HTTP/1.1 "u8).Append(status).Append(" "u8).Append(ReasonPhrases.Get(status)).CrLf();
    }

    /// <summary>Sends to the client and counts it; a client that is gone turns keep-alive off.</summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    protected async ValueTask<bool> SendToClientAsync(ReadOnlyMemory<byte> bytes)
    {
        try
        {
            await Client.Io.SendAsync(bytes).ConfigureAwait(false);
            X?.AddOut(bytes.Length);
            return true;
        }
        catch (Exception e) when (Duplex.IsIoError(e))
        {
            KeepAlive = false;
            return false;
        }
    }

    // ------------------------------------------------------------------ forwarding

    /// <summary>What the listener type wants of a relayed response.</summary>
    protected readonly record struct RelayOptions(CompiledPolicy Policy, bool ViaOnResponse, ulong DropFromResponse = 0);

    /// <summary>The request to the upstream, up to its final response head (nothing is answered to the client yet).</summary>
    protected ValueTask<UpstreamResult> SendUpstreamAsync(UpstreamPool pool, Limits limits)
    {
        // Not an async method itself unless a 100 Continue goes first: one state machine less to box per request.
        if (Head.Framing.HasBody && Head.Expects100 && Head.MinorVersion == 1 && !_continued) return ContinueThenSendAsync(pool, limits);
        X!.UpstreamSent();
        return UpstreamExchange.SendAsync(pool, UpOut.WrittenMemory, Client, Head.Framing, limits.MaxRequestBody,
            Head.IsHead, Head.IsConnect, new UpstreamTimeouts(limits.ResponseTimeout, limits.IdleTimeout),
            Head.MinorVersion == 1 ? _interim ??= RelayInterimAsync : null, Math.Max(64 * 1024, limits.MaxHeaderSize), Conn.Aborted);
    }

    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<UpstreamResult> ContinueThenSendAsync(UpstreamPool pool, Limits limits)
    {
        _continued = true;
        await SendToClientAsync(Continue).ConfigureAwait(false);
        return await SendUpstreamAsync(pool, limits).ConfigureAwait(false);
    }

    /// <summary>
    /// Relays the response the upstream gave (<see cref="SendUpstreamAsync"/>), or answers for the upstream that gave
    /// none. Returns whether the client connection may go on. Not an async frame of its own: it picks the one that runs.
    /// </summary>
    protected ValueTask<bool> RespondAsync(UpstreamResult r, Limits limits, RelayOptions o)
    {
        _continued = false;
        if (r.End != UpstreamEnd.Response) return UpstreamFailedAsync(r, limits);
        if (r.Connection!.Response.Status == 101) return UpgradeAsync(r, limits);
        return RelayResponseAsync(r, limits, o);
    }

    bool _continued;
    static readonly ReadOnlyMemory<byte> Continue = "HTTP/1.1 100 Continue\r\n\r\n"u8.ToArray();

    /// <summary>
    /// 101 Switching Protocols to an upgrade request (WebSocket): the head goes to the client with Upgrade and
    /// Connection: upgrade, then bytes flow both ways until either side closes or both are idle past idle_timeout.
    /// A 101 the request did not ask for (the upgrade was not forwarded: h2c, the forward proxy), or to a protocol it
    /// did not name, would turn the connection into a tunnel no policy sees: 502, upstream connection dropped.
    /// The tunnel is logged as it opens (the decision, 101) and as it closes (a transfer line with its bytes).
    /// </summary>
    async ValueTask<bool> UpgradeAsync(UpstreamResult r, Limits limits)
    {
        var up = r.Connection!;
        var resp = up.Response;
        var x = X!;
        x.ResponseStarted();
        KeepAlive = false;
        string? refusal = ForwardedUpgrade is null || r.RequestBody is not null
            ? "a 101 Switching Protocols the request did not ask for"
            : SwitchesToOther(resp, ForwardedUpgrade);
        if (refusal is not null)
        {
            await up.CloseAsync().ConfigureAwait(false);
            return await UpstreamPageAsync(502, $"upstream {up.Pool.Label} sent {refusal}", $"the upstream server sent {refusal}",
                Decision.RuleName ?? PseudoRules.Error).ConfigureAwait(false);
        }
        var w = Out;
        w.Reset();
        w.Append("HTTP/1.1 101 "u8).Append(resp.Reason).CrLf()
            .CopyFields(resp, 0, keep: UpgradeMask)
            .Append("Connection: upgrade\r\n\r\n"u8);
        x.Status = 101;
        if (!await SendToClientAsync(w.WrittenMemory).ConfigureAwait(false))
        {
            await up.CloseAsync().ConfigureAwait(false);
            x.Allow(Decision.RuleName ?? PseudoRules.Error, "client closed the connection");
            return false;
        }
        x.Allow(Decision.RuleName ?? PseudoRules.Error, $"upgraded to {ForwardedUpgrade}: tunnel open");
        CloseExchange();
        var tunnel = Ctx.Open(Conn, ExchangeKinds.Transfer, x.Id);
        tunnel.Request = x.Request;
        tunnel.Upstream = x.Upstream;
        tunnel.Status = 101;
        up.NoDeadline();
        await DuplexRelay.RunAsync(Client, up.Peer, limits.IdleTimeout, tunnel.Counter).ConfigureAwait(false);
        await up.CloseAsync().ConfigureAwait(false);
        // No verdict: the decision was counted when the tunnel opened.
        tunnel.Reason = $"{ForwardedUpgrade} tunnel closed";
        tunnel.Close();
        return false;
    }

    /// <summary>Why a 101 cannot be relayed: it switches to a protocol the request did not name (versions ignored), or to none.</summary>
    static string? SwitchesToOther(ResponseHead resp, string asked)
    {
        bool any = false;
        for (int i = resp.IndexOf(KnownHeader.Upgrade); i >= 0; i = resp.IndexOf(KnownHeader.Upgrade, i + 1))
        {
            var list = new HttpChars.ListReader(resp.Value(i));
            while (list.Next(out var token))
            {
                any = true;
                if (!Named(asked, token)) return $"an upgrade to '{HttpHead.Latin1(resp.Value(i))}', which the request did not ask for";
            }
        }
        return any ? null : "a 101 Switching Protocols without an Upgrade field";
    }

    static bool Named(string asked, ReadOnlySpan<byte> token)
    {
        foreach (var range in asked.AsSpan().Split(','))
        {
            var a = HeaderValue.TrimOws(asked.AsSpan()[range]);
            if (ProtocolName(token).Length == ProtocolName(a).Length && Ascii.EqualsIgnoreCase(ProtocolName(token), ProtocolName(a))) return true;
        }
        return false;
    }

    static ReadOnlySpan<byte> ProtocolName(ReadOnlySpan<byte> t) => t.IndexOf((byte)'/') is var i and >= 0 ? t[..i] : t;
    static ReadOnlySpan<char> ProtocolName(ReadOnlySpan<char> t) => t.IndexOf('/') is var i and >= 0 ? t[..i] : t;

    /// <summary>
    /// The protocols the request asks to upgrade to (`Upgrade` with `Connection: upgrade`), as sent, less `h2c`
    /// (never forwarded: the request goes on as plain HTTP/1.1); null when none is left.
    /// </summary>
    protected string? RequestedUpgrade()
    {
        var h = Head;
        if (!h.Upgrade) return null;
        StringBuilder? sb = null;
        for (int i = h.IndexOf(KnownHeader.Upgrade); i >= 0; i = h.IndexOf(KnownHeader.Upgrade, i + 1))
        {
            var list = new HttpChars.ListReader(h.Value(i));
            while (list.Next(out var token))
            {
                if (HttpChars.EqualsLower(token, "h2c"u8)) continue;
                if (sb is null) sb = new StringBuilder();
                else sb.Append(", ");
                sb.Append(HttpHead.Latin1(token));
            }
        }
        return sb?.ToString();
    }

    /// <summary>Forwards the request's upgrade (<see cref="RequestedUpgrade"/>): Upgrade and Connection: upgrade towards the upstream.</summary>
    protected void WriteUpgrade(HeadWriter w, string protocols)
    {
        ForwardedUpgrade = protocols;
        w.Append("Upgrade: "u8).Append(protocols).CrLf().Append("Connection: upgrade\r\n"u8);
    }

    /// <summary>Upgrade, the one hop-by-hop field an upgrade passes on.</summary>
    protected static readonly ulong UpgradeMask = HeadWriter.Mask(KnownHeader.Upgrade);

    Func<ResponseHead, ValueTask>? _interim;

    /// <summary>103 Early Hints and other interim responses go to an HTTP/1.1 client as they come.</summary>
    async ValueTask RelayInterimAsync(ResponseHead h)
    {
        var w = new HeadWriter(256);
        w.Append("HTTP/1.1 "u8).Append(h.Status).Append(" "u8).Append(h.Reason).CrLf().CopyFields(h, 0).CrLf();
        await SendToClientAsync(w.WrittenMemory).ConfigureAwait(false);
    }

    /// <summary>No response to relay: the gateway answers 502/504 (or 400/413 when the client's body was at fault).</summary>
    async ValueTask<bool> UpstreamFailedAsync(UpstreamResult r, Limits limits)
    {
        string rule = Decision.RuleName ?? PseudoRules.Error;
        switch (r.End)
        {
            case UpstreamEnd.ClientBodyFailed:
                {
                    var b = r.Body;
                    if (b.End == PumpEnd.OverLimit)
                        return await RejectAsync(413, $"request body over the limit of {limits.MaxRequestBody} bytes", PseudoRules.MaxRequestBody, close: true).ConfigureAwait(false);
                    if (b.End == PumpEnd.SourceInvalid)
                        return await RejectAsync(b.Error.Status, b.Error.Reason, PseudoRules.Protocol, close: true).ConfigureAwait(false);
                    // A half-closed client may still read the answer.
                    if (b.End == PumpEnd.SourceEnded)
                        return await RejectAsync(400, $"request body ended after {b.DataBytes} bytes", PseudoRules.Protocol, close: true).ConfigureAwait(false);
                    // The client went away in the middle of its body.
                    KeepAlive = false;
                    X!.Status = 400;
                    X.Allow(rule, "client closed the connection in the middle of its request body");
                    return false;
                }
            case UpstreamEnd.TimedOut:
                return await UpstreamPageAsync(504, r.Error ?? "upstream did not answer in time", "the upstream server did not answer in time", rule).ConfigureAwait(false);
            case UpstreamEnd.ConnectFailed when r.ConnectTimedOut:
                return await UpstreamPageAsync(504, r.Error ?? "upstream connect timed out", "the upstream server could not be reached in time", rule).ConfigureAwait(false);
            default:
                return await UpstreamPageAsync(502, r.Error ?? "upstream failed", "the upstream server failed to answer", rule).ConfigureAwait(false);
        }
    }

    /// <summary>502/504 for an upstream failure: the page names the upstream unless <see cref="UpstreamsAreInternal"/>; the log always does.</summary>
    ValueTask<bool> UpstreamPageAsync(int status, string detail, string generic, string rule) =>
        RejectAsync(status, UpstreamsAreInternal ? generic : detail, rule, close: Head.Framing.HasBody, verdict: Verdict.Allow, logReason: detail);

    /// <summary>The reverse proxy's upstreams are internal addresses its clients must not learn from error pages.</summary>
    protected virtual bool UpstreamsAreInternal => false;

    /// <summary>
    /// The response's moment: response rules on its head, then the head to the client (the upstream's field lines
    /// as received, less hop-by-hop ones, plus Via and our framing), then the body by its framing.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> RelayResponseAsync(UpstreamResult r, Limits limits, RelayOptions o)
    {
        var up = r.Connection!;
        var resp = up.Response;
        var x = X!;
        x.ResponseStarted();
        int status = resp.Status;
        var policy = o.Policy;
        if (policy.HasResponseRules)
        {
            // Every media type the response carries (several lines, or a comma list) is judged.
            var rd = HttpDecisions.JudgeResponse(policy, Attrs, resp.Get("Content-Type"),
                resp.Framing.Kind == BodyKind.Length ? resp.Framing.Length : resp.Framing.Kind == BodyKind.None ? 0 : null);
            if (!rd.Allowed)
            {
                // Nothing of the response has been sent: replace it whole; the upstream connection is dropped.
                Decision = rd;
                await DropAsync(up, r.RequestBody).ConfigureAwait(false);
                return await RejectAsync(403, rd.Reason ?? "response denied by policy", rd.RuleName, close: !RequestBodyDone(r)).ConfigureAwait(false);
            }
        }

        var framing = resp.Framing;
        bool client10 = Head.MinorVersion == 0;
        BodyOut mode = BodyOut.AsFramed;
        var outFraming = framing;
        switch (framing.Kind)
        {
            case BodyKind.Chunked when client10:
                mode = BodyOut.DataOnly;
                outFraming = BodyFraming.UntilClose;
                KeepAlive = false;
                break;
            case BodyKind.UntilClose when !client10:
                mode = BodyOut.Chunked;
                outFraming = BodyFraming.Chunked;
                break;
            case BodyKind.UntilClose:
                KeepAlive = false;
                break;
        }
        // A request body the upstream did not wait for (an early answer) is unread: the connection cannot go on.
        bool bodyDone = RequestBodyDone(r);
        if (!bodyDone) KeepAlive = false;

        var w = Out;
        w.Reset();
        w.Append("HTTP/1.1 "u8).Append(status).Append(" "u8).Append(resp.Reason).CrLf();
        w.CopyFields(resp, o.DropFromResponse | (o.ViaOnResponse ? ViaMask : 0));
        if (o.ViaOnResponse) WriteVia(w, resp);
        if (framing.Kind == BodyKind.None && (Head.IsHead || status == 304)) CopyFramingFields(w, resp, client10);
        else if (framing.Kind == BodyKind.None && status is >= 200 and not 204) w.Append("Content-Length: 0\r\n"u8);
        else w.Framing(outFraming);
        if (!KeepAlive) w.Append("Connection: close\r\n"u8);
        else if (client10) w.Append("Connection: keep-alive\r\n"u8);
        w.CrLf();
        x.Status = status;
        int cti = resp.IndexOf(KnownHeader.ContentType);
        x.ContentType = cti < 0 ? null : _contentType.Get(resp.Value(cti));

        // What of the body is here already goes out with the head, in one send. A chunked body is checked first:
        // framing that breaks the rules in what has arrived is a 502 before anything reaches the client.
        var peer = up.Peer;
        var decoder = new ChunkedDecoder();
        long sentWithHead = 0;
        Func<long, bool>? watch = framing.Kind != BodyKind.Length && framing.HasBody && HttpDecisions.WatchesSize(policy) ? _watch ??= WatchSize : null;
        if (framing.Kind == BodyKind.Length && peer.Count > 0)
        {
            int take = (int)Math.Min(peer.Count, Math.Min(framing.Length, 64 * 1024));
            w.Append(peer.Data[..take]);
            peer.Consume(take);
            sentWithHead = take;
            framing = framing.Length == take ? BodyFraming.Empty : new BodyFraming(BodyKind.Length, framing.Length - take);
        }
        else if (framing.Kind == BodyKind.Chunked && peer.Count > 0)
        {
            var res = decoder.Transform(peer.DataSpan, mode == BodyOut.DataOnly, out int consumed, out int produced, out var error, 502);
            if (res == ParseResult.Invalid || (watch is not null && watch(decoder.DataBytes)))
            {
                await DropAsync(up, r.RequestBody).ConfigureAwait(false);
                if (res == ParseResult.Invalid)
                    return await RejectAsync(502, $"invalid response from {up.Pool.Label}: {error.Reason}", Decision.RuleName ?? PseudoRules.Error,
                        close: !bodyDone, verdict: Verdict.Allow).ConfigureAwait(false);
                Decision = _late;
                return await RejectAsync(403, _late.Reason ?? "response denied by policy", _late.RuleName, close: !bodyDone).ConfigureAwait(false);
            }
            w.Append(peer.Data[..produced]);
            peer.Consume(consumed);
            sentWithHead = decoder.DataBytes;
            if (res == ParseResult.Complete) framing = BodyFraming.Empty;
        }
        if (!await SendToClientAsync(w.WrittenMemory).ConfigureAwait(false))
        {
            await DropAsync(up, r.RequestBody).ConfigureAwait(false);
            x.Allow(Decision.RuleName ?? PseudoRules.Error, "client closed the connection");
            return false;
        }

        if (framing.HasBody)
        {
            var p = await BodyPump.CopyAsync(peer, Client.Io, framing, mode, long.MaxValue, up, limits.IdleTimeout, watch, 502, decoder).ConfigureAwait(false);
            x.AddOut(p.WireOut);
            if (!p.Ok)
            {
                await DropAsync(up, r.RequestBody).ConfigureAwait(false);
                KeepAlive = false;
                if (p.End == PumpEnd.Stopped)
                {
                    // Unknown length, now over a size bound: like Squid's reply_body_max_size, cut the transfer.
                    x.Deny(_late.RuleName, $"{_late.Reason ?? "response denied by policy"} (after {p.DataBytes} bytes of a response of unknown length)");
                    return false;
                }
                x.Allow(Decision.RuleName ?? PseudoRules.Error, p.End switch
                {
                    PumpEnd.SinkFailed => "client closed the connection",
                    PumpEnd.SourceInvalid => $"upstream {up.Pool.Label} broke the body's framing after {p.DataBytes} bytes: {p.Error.Reason}",
                    PumpEnd.SourceEnded when framing.Kind == BodyKind.Length => $"upstream body ended after {sentWithHead + p.DataBytes} of {sentWithHead + framing.Length} bytes",
                    _ => $"upstream {up.Pool.Label} failed after {p.DataBytes} bytes of the body{(up.TimedOut ? " (idle timeout)" : "")}",
                });
                return false;
            }
        }
        bool requestOk = true;
        if (r.RequestBody is { } rb)
        {
            var b = await rb.ConfigureAwait(false);
            x.AddIn(b.WireIn);
            requestOk = b.Ok;
            if (!b.Ok) KeepAlive = false;
        }
        if (!resp.Close && requestOk) await up.Pool.ReturnAsync(up).ConfigureAwait(false);
        else await up.CloseAsync().ConfigureAwait(false);
        x.Allow(Decision.RuleName ?? PseudoRules.Error, Decision.Reason);
        return KeepAlive;
    }

    static bool RequestBodyDone(UpstreamResult r) => r.RequestBody is null || (r.RequestBody.IsCompleted && r.RequestBody.Result.Ok);

    /// <summary>Closes an upstream connection whose response is not relayed (and stops a request body still streaming).</summary>
    static async ValueTask DropAsync(UpstreamConnection up, Task<PumpResult>? body)
    {
        up.Abort();
        if (body is not null)
        {
            try { await body.ConfigureAwait(false); }
            catch (Exception e) when (Duplex.IsIoError(e)) { }
        }
        await up.CloseAsync().ConfigureAwait(false);
    }

    Func<long, bool>? _watch;
    Decision _late;

    bool WatchSize(long soFar)
    {
        Attrs.Size = soFar;
        var d = Ctx.Policy.EvaluateResponse(Attrs);
        if (d.Allowed) return false;
        _late = d;
        return true;
    }

    static readonly ulong ViaMask = HeadWriter.Mask(KnownHeader.Via);

    /// <summary>Via: what the message carried, then this gateway (RFC 9110 §7.6.3).</summary>
    protected static void WriteVia(HeadWriter w, HttpHead h)
    {
        w.Append("Via: "u8);
        for (int i = h.IndexOf(KnownHeader.Via); i >= 0; i = h.IndexOf(KnownHeader.Via, i + 1))
            if (!h.Value(i).IsEmpty) w.Append(h.Value(i)).Append(", "u8);
        w.Append(ViaToken).CrLf();
    }

    /// <summary>HEAD and 304: the length or coding a GET would get, passed on as metadata.</summary>
    static void CopyFramingFields(HeadWriter w, ResponseHead resp, bool client10)
    {
        int cl = resp.IndexOf(KnownHeader.ContentLength);
        if (cl >= 0) w.Append("Content-Length: "u8).Append(resp.Value(cl)).CrLf();
        else if (!client10 && resp.IndexOf(KnownHeader.TransferEncoding) >= 0) w.Append("Transfer-Encoding: chunked\r\n"u8);
    }
}
