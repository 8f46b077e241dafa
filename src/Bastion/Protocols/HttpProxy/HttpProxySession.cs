using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Bastion.Configuration;
using Bastion.Hosting;
using Bastion.Identity;
using Bastion.Observability;
using Bastion.Policy;
using Bastion.Policy.Canonical;
using Bastion.Gateway;
using Bastion.Protocols.Http;
using Bastion.Protocols.Http.Inspection;

namespace Bastion.Protocols.HttpProxy;

/// <summary>
/// One client connection to the forward proxy, as a loop of exchanges: read head → check framing → identify →
/// decide → forward (or tunnel for CONNECT) → judge the response → write it → log. Keep-alive on both sides;
/// bodies stream in constant memory. The same session runs inside an inspected CONNECT tunnel, over the decrypted
/// stream (<paramref name="tunnelTransport"/>), with <paramref name="tunnel"/> naming the origin its requests go to.
/// </summary>
sealed class HttpProxySession(ListenerContext ctx, ClientConnection conn, HttpMessageInvoker upstream,
    ForwardInspection? inspection = null, InspectedOrigin? tunnel = null, Transport? tunnelTransport = null)
{
    const string ViaValue = ForwardHeaders.ViaValue;
    readonly RequestHead _head = new();
    readonly RequestAttributes _attrs = new();
    readonly CanonicalTarget _target = new();
    PipeReader _in = null!;
    PipeWriter _out = null!;
    string? _user;
    bool _idle;
    CancellationTokenSource? _headTimeout;
    CancellationTokenSource? _exchangeTimeout;

    // Per exchange: its record (request, status, bytes, verdict: the access-log line), keep-alive and decision.
    Exchange? _x;
    bool _keepAlive;
    Decision _decision;

    public async Task RunAsync()
    {
        var transport = tunnelTransport ?? conn.Transport;
        _in = transport.Input;
        _out = transport.Output;
        if (tunnel is not null) _user = conn.User;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(conn.Aborted);
        // A stopping gateway closes connections that wait for their next request; busy ones finish first.
        using var drain = conn.Draining.Register(static s =>
        {
            var self = (HttpProxySession)s!;
            if (Volatile.Read(ref self._idle)) self._headTimeout?.Cancel();
        }, this);
        _headTimeout = timeout;
        int exchanges = 0;
        try
        {
            while (true)
            {
                var limits = ctx.Config.Limits;
                var head = await ReadHeadAsync(timeout, limits, first: exchanges == 0).ConfigureAwait(false);
                if (!head) break;
                exchanges++;
                bool again = await ExchangeAsync(timeout, limits).ConfigureAwait(false);
                if (!again) break;
            }
        }
        finally
        {
            _exchangeTimeout?.Dispose();
            try { await _out.FlushAsync().ConfigureAwait(false); } catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException or InvalidOperationException) { }
            // Inside a tunnel, the CONNECT's session names the connection.
            if (tunnel is null) conn.Record.Request = exchanges == 1 && _x?.Request is { } only ? only : $"{exchanges} requests";
        }
    }

    /// <summary>Reads one request head. False when the client is gone (or idle too long) between requests.</summary>
    async Task<bool> ReadHeadAsync(CancellationTokenSource timeout, Limits limits, bool first)
    {
        timeout.TryReset();
        // Between keep-alive requests the idle timeout applies; once a byte arrives, the header timeout.
        timeout.CancelAfter(first ? limits.HeaderTimeout : limits.IdleTimeout);
        bool started = false;
        // While no request has begun, a stopping gateway closes the connection instead of waiting.
        Volatile.Write(ref _idle, true);
        if (conn.Draining.IsCancellationRequested) return false;
        try
        {
            while (true)
            {
                var result = await _in.ReadAsync(timeout.Token).ConfigureAwait(false);
                var buf = result.Buffer;
                if (!started && !buf.IsEmpty)
                {
                    started = true;
                    Volatile.Write(ref _idle, false);
                    BeginExchange();
                    if (!first)
                    {
                        timeout.TryReset();
                        timeout.CancelAfter(limits.HeaderTimeout);
                    }
                }
                var status = RequestHeadParser.TryParse(buf, limits.MaxHeaderSize, _head, out var consumed, out var error);
                if (status == ParseStatus.Done)
                {
                    _in.AdvanceTo(consumed);
                    _x!.AddIn(_head.HeadLength);
                    return true;
                }
                if (status == ParseStatus.Error)
                {
                    _in.AdvanceTo(buf.End);
                    _x!.Request = "(malformed request)";
                    await RejectAsync(error.Status, error.Reason, PseudoRules.Protocol, close: true).ConfigureAwait(false);
                    return false;
                }
                _in.AdvanceTo(buf.Start, buf.End);
                if (result.IsCompleted)
                {
                    if (!buf.IsEmpty)
                    {
                        _x!.Request = "(incomplete request)";
                        LogExchange(400, PseudoRules.Protocol, "connection closed in the middle of a request head", Verdict.Deny);
                    }
                    return false;
                }
            }
        }
        catch (OperationCanceledException) when (!conn.Aborted.IsCancellationRequested)
        {
            if (!started) return false;
            // Slow or stalled head (slowloris): answer 408 and close.
            _x!.Request = "(request head timeout)";
            await RejectAsync(408, "request head not received in time", PseudoRules.HeaderTimeout, close: true).ConfigureAwait(false);
            return false;
        }
    }

    void BeginExchange()
    {
        _x = ctx.Open(conn, ExchangeKinds.Request);
        if (tunnel is not null)
        {
            _x.Tls = "inspected";
            _x.Sni = tunnel.Sni;
        }
        _decision = default;
    }

    /// <summary>Handles one request. Returns whether the connection stays open for another.</summary>
    async Task<bool> ExchangeAsync(CancellationTokenSource timeout, Limits limits)
    {
        timeout.TryReset();
        var h = _head;
        _x!.Request = Redact.RequestLine($"{h.Method} {h.Target}");
        _keepAlive = h.MinorVersion == 1 ? !h.HasToken("Connection", "close") : h.HasToken("Connection", "keep-alive");

        // Framing (RFC 9112 §6): anything ambiguous is refused and the connection closed.
        if (RequestFraming.Check(h, out long contentLength, out bool chunked) is { } framingError)
            return await RejectAsync(framingError.Status, framingError.Reason, PseudoRules.Protocol, close: true).ConfigureAwait(false);
        bool hasBody = chunked || contentLength > 0;
        if (h.Count("Host") > 1) return await RejectAsync(400, "more than one Host header", PseudoRules.Protocol, close: true).ConfigureAwait(false);

        // The target: authority-form for CONNECT, absolute-form for everything else.
        _attrs.ResetRequest();
        _attrs.Source = conn.Client.Address;
        _attrs.Headers = h;
        bool connect = h.Method == "CONNECT";
        Uri? uri;
        if (tunnel is not null)
        {
            // Inside an inspected tunnel: origin-form, judged as https://name/path with the tunnel's name as host.
            if (!TunnelTarget.TryRequest(_attrs, tunnel, h.Method, h.Target, h.Get("Host"), out uri, out var status, out var why, ctx.Config))
                return await RejectAsync(status, why!, PseudoRules.Protocol, close: true).ConfigureAwait(false);
            _x.Request = $"{h.Method} {uri}";
        }
        else
        {
            // The one canonical form (SPEC 2.1): what the policy judges is what is forwarded.
            var status = HttpAttributes.ProxyTarget(_attrs, h.Method, h.Target, ctx.Config, _target, out var targetError);
            if (status != TargetStatus.Ok)
                return await RejectAsync(400, targetError!, status == TargetStatus.Ambiguous ? AmbiguousRule : PseudoRules.Protocol, close: true).ConfigureAwait(false);
            uri = null;
            if (!connect) _x.Request = $"{h.Method} {_target.Url}";
        }
        _attrs.Size = chunked ? -1 : contentLength;

        // Identify (inside a tunnel, the CONNECT did).
        var config = ctx.Config;
        if (config.Authenticate && tunnel is null)
        {
            var auth = await HttpDecisions.AuthenticateAsync(ctx, h.Get("Proxy-Authorization"), conn.Client.Address, conn.Aborted).ConfigureAwait(false);
            if (!auth.Ok)
                return await RejectAsync(407, auth.Throttled ? auth.Failure! : "proxy authentication required", PseudoRules.Authenticate, close: hasBody || !_keepAlive).ConfigureAwait(false);
            _user = conn.User = auth.User;
        }
        _attrs.User = _user;

        // Decide.
        if (config.RefuseConflictingHeaders && ctx.Policy.ConflictingHeader(h) is { } conflict)
            return await RejectAsync(400, $"conflicting values of header '{conflict}', which a rule judges", ConflictRule, close: true).ConfigureAwait(false);
        _decision = HttpDecisions.Decide(ctx.Policy, _attrs);
        if (!_decision.Allowed)
        {
            // A rule on `sni` may still allow it once the ClientHello is read.
            if (connect && inspection is not null && TunnelInspection.SniMayAllow(ctx.Policy, _decision))
                return await TunnelAsync(config.Limits, provisional: true).ConfigureAwait(false);
            return await RejectAsync(403, _decision.Reason ?? "denied by policy", _decision.RuleName, close: hasBody || !_keepAlive, verdict: Verdict.Deny).ConfigureAwait(false);
        }

        if (hasBody && !chunked && contentLength > config.Limits.MaxRequestBody)
            return await RejectAsync(413, $"request body of {contentLength} bytes is over the limit of {config.Limits.MaxRequestBody}", PseudoRules.MaxRequestBody, close: true).ConfigureAwait(false);

        if (connect) return await TunnelAsync(config.Limits).ConfigureAwait(false);
        if (tunnel?.Failure is { } failure)
            return await RejectAsync(502, failure, _decision.RuleName, close: hasBody, verdict: Verdict.Allow).ConfigureAwait(false);

        // Max-Forwards (RFC 9110 §7.6.2): at zero the proxy answers OPTIONS and TRACE itself.
        if (h.Method is "OPTIONS" or "TRACE" && h.Get("Max-Forwards") is { } mf && long.TryParse(mf, out var maxForwards) && maxForwards <= 0)
            return await AnswerMaxForwardsAsync().ConfigureAwait(false);

        if (tunnel is not null) return await ForwardAsync(uri!, hasBody, chunked, contentLength, config.Limits).ConfigureAwait(false);

        // The address connected to is judged too (SPEC 2.1): after DNS, before any byte goes out.
        var judged = await Connector.ResolveJudgedAsync(ctx.Runtime.Resolver, ctx.Policy, _attrs, _target.Host!, config.Limits.ConnectTimeout, conn.Aborted).ConfigureAwait(false);
        if (judged.Denied is { } denied)
        {
            _decision = denied;
            return await RejectAsync(403, denied.Reason ?? "denied by policy", denied.RuleName, close: hasBody || !_keepAlive, verdict: Verdict.Deny).ConfigureAwait(false);
        }
        if (!judged.Ok)
        {
            return judged.Error == SocketError.TimedOut
                ? await RejectAsync(504, $"resolving {_target.Host} timed out", _decision.RuleName, close: hasBody || !_keepAlive, verdict: Verdict.Allow).ConfigureAwait(false)
                : await RejectAsync(502, $"upstream {_target.Authority}: host not found", _decision.RuleName, close: hasBody || !_keepAlive, verdict: Verdict.Allow).ConfigureAwait(false);
        }
        return await ForwardAsync(UpstreamUri(judged.Allowed[0]), hasBody, chunked, contentLength, config.Limits).ConfigureAwait(false);
    }

    /// <summary>The log's rule for targets refused as ambiguous, and for conflicting header lines (docs/policy.md).</summary>
    const string AmbiguousRule = "protocol.ambiguous_paths", ConflictRule = "protocol.conflicting_headers";

    /// <summary>
    /// The URI handed to the HTTP client: the judged address (so that it connects there and nowhere else, and pools
    /// connections per address) with the canonical path and query, sent byte for byte. The name goes in Host (and
    /// in SNI, which the client takes from Host).
    /// </summary>
    Uri UpstreamUri(IPAddress address)
    {
        var ip = address.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();
        return new Uri($"{_target.Scheme}://{ip}:{_target.Port}{_target.PathAndQuery}",
            new UriCreationOptions { DangerousDisablePathAndQueryCanonicalization = true });
    }

    async Task<bool> ForwardAsync(Uri uri, bool hasBody, bool chunked, long contentLength, Limits limits)
    {
        var h = _head;
        using var request = new HttpRequestMessage(HttpMethod.Parse(h.Method), tunnel is null ? uri : tunnel.UpstreamUri(uri.PathAndQuery))
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
        };
        // The URI holds the judged address: the name the client asked for goes in Host (and SNI).
        var authority = tunnel is null ? _target.Authority : uri.Authority;
        if (tunnel is null) request.Headers.Host = authority;
        RequestBody? body = null;
        if (hasBody)
        {
            body = new RequestBody(_in, contentLength, chunked, limits.MaxRequestBody);
            if (h.HasToken("Expect", "100-continue"))
                body.OnFirstRead = async () =>
                {
                    ResponseHeadWriter.Ascii(_out, "HTTP/1.1 100 Continue\r\n\r\n");
                    await FlushAsync().ConfigureAwait(false);
                };
            request.Content = new StreamedBodyContent(body, chunked ? null : contentLength);
        }
        ForwardHeaders.CopyRequestHeaders(h, request);

        // One timeout source per connection, reset per exchange (a cancelled one is replaced).
        if (_exchangeTimeout is null || !_exchangeTimeout.TryReset())
        {
            _exchangeTimeout?.Dispose();
            _exchangeTimeout = CancellationTokenSource.CreateLinkedTokenSource(conn.Aborted);
        }
        var cts = _exchangeTimeout;
        cts.CancelAfter(limits.ResponseTimeout);
        HttpResponseMessage response;
        _x!.Upstream = authority;
        _x.UpstreamSent();
        try
        {
            response = await upstream.SendAsync(request, cts.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (body?.Failure is { } f)
        {
            _ = e;
            return await RejectAsync(f.Status, f.Message, f.Status == 413 ? PseudoRules.MaxRequestBody : PseudoRules.Protocol, close: true, verdict: Verdict.Allow).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!conn.Aborted.IsCancellationRequested)
        {
            return await RejectAsync(504, $"upstream {authority} did not answer within {limits.ResponseTimeout.TotalSeconds:0.#}s", _decision.RuleName, close: hasBody && body?.Complete != true, verdict: Verdict.Allow).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            var status = e.InnerException is OperationCanceledException or TimeoutException ? 504 : 502;
            return await RejectAsync(status, $"upstream {authority}: {UpstreamError(e)}", _decision.RuleName, close: hasBody && body?.Complete != true, verdict: Verdict.Allow).ConfigureAwait(false);
        }
        _x.ResponseStarted();
        using (response)
        {
            return await RelayResponseAsync(response, body, limits, cts).ConfigureAwait(false);
        }
    }

    static string UpstreamError(HttpRequestException e)
    {
        if (e.InnerException is SocketException se) return se.SocketErrorCode switch
        {
            SocketError.ConnectionRefused => "connection refused",
            SocketError.HostNotFound or SocketError.NoData => "host not found",
            SocketError.TimedOut => "connect timed out",
            SocketError.HostUnreachable or SocketError.NetworkUnreachable => "unreachable",
            _ => se.Message,
        };
        return e.HttpRequestError switch
        {
            HttpRequestError.NameResolutionError => "host not found",
            HttpRequestError.ConnectionError => "cannot connect",
            HttpRequestError.SecureConnectionError => "TLS handshake failed (certificate not trusted?)",
            HttpRequestError.InvalidResponse => "invalid response",
            HttpRequestError.ResponseEnded => "connection closed before a response",
            _ => e.Message,
        };
    }

    async Task<bool> RelayResponseAsync(HttpResponseMessage response, RequestBody? body, Limits limits, CancellationTokenSource cts)
    {
        var content = response.Content;
        // Framed two ways, or a 101 (the proxy strips Upgrade: any 101 is unrequested): never relayed, and disposing
        // the unread response drops the upstream connection.
        if (UpstreamResponses.Refusal(response, null) is { } ambiguous)
            return await RejectAsync(502, $"upstream {_x!.Upstream} sent a response with {ambiguous}", _decision.RuleName, close: true, verdict: Verdict.Allow).ConfigureAwait(false);
        long? length = content.Headers.NonValidated.TryGetValues("Content-Length", out var clv) && long.TryParse(clv.ToString(), out var cl) ? cl : null;

        // The response's moment: response rules see the request's attributes plus the response's.
        var policy = ctx.Policy;
        if (policy.HasResponseRules)
        {
            var contentType = UpstreamResponses.ContentTypes(response);
            var rd = HttpDecisions.JudgeResponse(policy, _attrs, contentType, length);
            if (!rd.Allowed)
            {
                _decision = rd;
                // The upstream's body is not read; its connection is dropped by disposing the response.
                return await RejectAsync(403, rd.Reason ?? "response denied by policy", rd.RuleName, close: body is not null && !body.Complete, verdict: Verdict.Deny).ConfigureAwait(false);
            }
        }

        int status = (int)response.StatusCode;
        bool noBody = _head.Method == "HEAD" || status is 204 or 304 || (status >= 100 && status < 200);
        bool chunkedOut = !noBody && length is null && _head.MinorVersion == 1;
        bool closeDelimited = !noBody && length is null && _head.MinorVersion == 0;
        bool sizeWatch = !noBody && length is null && HttpDecisions.WatchesSize(policy);
        if (closeDelimited) _keepAlive = false;
        if (body is not null && !body.Complete) _keepAlive = false;

        WriteResponseHead(response, status, length, noBody, chunkedOut);
        _x!.Status = status;

        long written = 0;
        if (!noBody)
        {
            try
            {
                cts.CancelAfter(limits.IdleTimeout);
                await using var src = await content.ReadAsStreamAsync(cts.Token).ConfigureAwait(false);
                while (true)
                {
                    var mem = _out.GetMemory(16 * 1024);
                    // Chunked: a fixed-width size line (leading zeros are valid hex) lets the data land in place.
                    var target = chunkedOut ? mem[ChunkPrefix..^2] : mem;
                    cts.CancelAfter(limits.IdleTimeout);
                    int n = await src.ReadAsync(target, cts.Token).ConfigureAwait(false);
                    if (n == 0) break;
                    if (chunkedOut) FrameChunk(mem.Span, n);
                    _out.Advance(chunkedOut ? ChunkPrefix + n + 2 : n);
                    written += n;
                    if (sizeWatch && policy.EvaluateResponse(SizeSoFar(written)) is { Allowed: false } late)
                    {
                        // Unknown length, now over a size bound: like Squid's reply_body_max_size, cut the transfer.
                        _decision = late;
                        LogExchange(status, late.RuleName, $"{late.Reason ?? "response denied by policy"} (after {written} bytes of a response of unknown length)", Verdict.Deny);
                        return false;
                    }
                    var flush = await FlushAsync().ConfigureAwait(false);
                    if (flush.IsCompleted) return false;
                }
                if (length is { } expected && written != expected)
                {
                    // The upstream broke its promise: the client must not take a short body as whole.
                    LogExchange(status, _decision.RuleName, $"upstream body ended after {written} of {expected} bytes", Verdict.Allow);
                    return false;
                }
                if (chunkedOut) ResponseHeadWriter.LastChunk(_out);
            }
            catch (Exception e) when (e is IOException or HttpRequestException or OperationCanceledException)
            {
                // Head already sent: all we can do is cut the connection so the client sees an incomplete body.
                LogExchange(status, _decision.RuleName, $"upstream body failed after {written} bytes: {e.Message}", Verdict.Allow);
                return false;
            }
        }
        await FlushAsync().ConfigureAwait(false);
        _x.AddIn(body?.Total ?? 0);
        LogExchange(status, _decision.RuleName, _decision.Reason, Verdict.Allow);
        return _keepAlive;
    }

    /// <summary>The response head as the client gets it: hop-by-hop headers dropped, Via added, framing for this client.</summary>
    void WriteResponseHead(HttpResponseMessage response, int status, long? length, bool noBody, bool chunkedOut)
    {
        var content = response.Content;
        ResponseHeadWriter.StatusLine(_out, status, response.ReasonPhrase);
        var connectionTokens = ForwardHeaders.ConnectionTokens(response);
        bool viaWritten = false;
        foreach (var (name, values) in response.Headers.NonValidated)
        {
            if (HttpHeaderRules.IsHopByHop(name) || connectionTokens?.Contains(name) == true) continue;
            if (name.Equals("Via", StringComparison.OrdinalIgnoreCase))
            {
                ResponseHeadWriter.Header(_out, "Via", $"{values}, {ViaValue}");
                viaWritten = true;
                continue;
            }
            foreach (var v in values) ResponseHeadWriter.Header(_out, name, v);
        }
        foreach (var (name, values) in content.Headers.NonValidated)
        {
            if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase)) continue;
            foreach (var v in values) ResponseHeadWriter.Header(_out, name, v);
        }
        if (!viaWritten) ResponseHeadWriter.Header(_out, "Via", ViaValue);
        if (length is { } len && (!noBody || _head.Method == "HEAD" || status == 304)) ResponseHeadWriter.Header(_out, "Content-Length", len);
        if (chunkedOut) ResponseHeadWriter.Header(_out, "Transfer-Encoding", "chunked");
        if (!_keepAlive) ResponseHeadWriter.Header(_out, "Connection", "close");
        else if (_head.MinorVersion == 0) ResponseHeadWriter.Header(_out, "Connection", "keep-alive");
        ResponseHeadWriter.EndHead(_out);
    }

    RequestAttributes SizeSoFar(long written)
    {
        _attrs.Size = written;
        return _attrs;
    }

    const int ChunkPrefix = 10;

    static void FrameChunk(Span<byte> frame, int n)
    {
        for (int i = 7; i >= 0; i--)
        {
            int nibble = (n >> ((7 - i) * 4)) & 0xf;
            frame[i] = (byte)(nibble < 10 ? '0' + nibble : 'a' + nibble - 10);
        }
        frame[8] = (byte)'\r';
        frame[9] = (byte)'\n';
        frame[ChunkPrefix + n] = (byte)'\r';
        frame[ChunkPrefix + n + 1] = (byte)'\n';
    }

    async Task<bool> AnswerMaxForwardsAsync()
    {
        var h = _head;
        if (h.Method == "OPTIONS")
        {
            ResponseHeadWriter.StatusLine(_out, 200, null);
            ResponseHeadWriter.Header(_out, "Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH, CONNECT");
            ResponseHeadWriter.Header(_out, "Via", ViaValue);
            ResponseHeadWriter.Header(_out, "Content-Length", 0);
            ResponseHeadWriter.EndHead(_out);
            _x!.Status = 200;
        }
        else
        {
            // TRACE: echo the request head, less credentials.
            var sb = new StringBuilder($"{h.Method} {h.Target} HTTP/1.{h.MinorVersion}\r\n");
            foreach (var (k, v) in h.Headers)
                if (!k.Equals("Proxy-Authorization", StringComparison.OrdinalIgnoreCase) && !k.Equals("Authorization", StringComparison.OrdinalIgnoreCase) && !k.Equals("Cookie", StringComparison.OrdinalIgnoreCase))
                    sb.Append(k).Append(": ").Append(v).Append("\r\n");
            var bytes = Encoding.Latin1.GetBytes(sb.ToString());
            ResponseHeadWriter.StatusLine(_out, 200, null);
            ResponseHeadWriter.Header(_out, "Content-Type", "message/http");
            ResponseHeadWriter.Header(_out, "Via", ViaValue);
            ResponseHeadWriter.Header(_out, "Content-Length", bytes.Length);
            ResponseHeadWriter.EndHead(_out);
            _out.Write(bytes);
            _x!.Status = 200;
        }
        await FlushAsync().ConfigureAwait(false);
        LogExchange(200, _decision.RuleName, "Max-Forwards reached zero: answered by the proxy", Verdict.Allow);
        return _keepAlive;
    }

    /// <param name="provisional">
    /// The CONNECT was denied, but a rule on `sni` may allow it once the ClientHello is read: the tunnel is opened
    /// towards the client only, and the origin is connected after the policy has seen the server name.
    /// </param>
    async Task<bool> TunnelAsync(Limits limits, bool provisional = false)
    {
        var host = _attrs.Host!;
        var port = _attrs.Port;
        Transport? up = null;
        if (!provisional)
        {
            var (connected, status, why) = await ConnectUpstreamAsync(host, port, limits).ConfigureAwait(false);
            if (connected is null) return await RejectAsync(status, why!, _decision.RuleName, close: true, verdict: status == 403 ? Verdict.Deny : Verdict.Allow).ConfigureAwait(false);
            up = connected;
        }
        await using var upstreamTransport = up;
        conn.Target = _x!.Upstream = $"{HostName.ForUrl(host)}:{port}";
        ResponseHeadWriter.Ascii(_out, "HTTP/1.1 200 Connection established\r\nVia: 1.1 bastion\r\n\r\n");
        await FlushAsync().ConfigureAwait(false);

        // With tls_inspection (or rules on `sni`), the ClientHello decides what becomes of the tunnel.
        if (inspection is not null && (provisional || ctx.Runtime.Inspection.ContainsKey(ctx.Name) || TunnelInspection.AsksSni(ctx.Policy)))
        {
            var reason = await new TunnelInspection(ctx, conn, inspection)
                .RunAsync(up, () => ConnectUpstreamAsync(host, port, limits), _attrs, _decision, limits, LogConnect).ConfigureAwait(false);
            if (reason is not null) conn.Record.Reason = reason;
            return false;
        }
        LogExchange(200, _decision.RuleName, _decision.Reason, Verdict.Allow);

        // Bytes the client sent right behind the CONNECT head (a TLS ClientHello, pipelined data) go first: the relay
        // takes them from the pipe. Tunnel bytes count towards the connection (its closed line), not the CONNECT line.
        await StreamRelay.RunAsync(conn.Transport, up!, limits.IdleTimeout, conn.Record.Counter, conn.Aborted).ConfigureAwait(false);
        return false;
    }

    /// <summary>
    /// Resolves a CONNECT target, asks the address rules about every address (SPEC 2.1) and connects to the allowed
    /// ones: the transport, or the status (403 with the denying rule as the decision, 502, 504) and why not.
    /// </summary>
    async Task<(Transport? Transport, int Status, string? Reason)> ConnectUpstreamAsync(string host, int port, Limits limits)
    {
        var judged = await Connector.ResolveJudgedAsync(ctx.Runtime.Resolver, ctx.Policy, _attrs, host, limits.ConnectTimeout, conn.Aborted).ConfigureAwait(false);
        if (judged.Denied is { } denied)
        {
            _decision = denied;
            return (null, 403, denied.Reason ?? "denied by policy");
        }
        var addresses = judged.Allowed;
        if (addresses.Length == 0)
            return judged.Error == SocketError.TimedOut ? (null, 504, $"resolving {host} timed out") : (null, 502, $"cannot connect to {host}:{port}: host not found");
        var connected = await Transport.ConnectAsync(addresses, port, limits.ConnectTimeout, conn.Aborted).ConfigureAwait(false);
        if (connected.Ok) return (connected.Transport, 200, null);
        if (connected.Error == SocketError.TimedOut) return (null, 504, $"connecting to {host}:{port} timed out");
        var why = connected.Error == SocketError.ConnectionRefused ? "connection refused" : connected.Message ?? connected.Error.ToString();
        return (null, 502, $"cannot connect to {host}:{port}: {why}");
    }

    /// <summary>The CONNECT line, written once the tunnel's fate (spliced, inspected, refused) is known.</summary>
    void LogConnect(int status, string rule, string? reason, Verdict verdict, string tls, string? sni)
    {
        _x!.Tls = tls;
        _x.Sni = sni;
        LogExchange(status, rule, reason, verdict);
    }

    /// <summary>Answers with the gateway's own page (403, 407, 4xx, 5xx), logs it, and says whether to keep going.</summary>
    async Task<bool> RejectAsync(int status, string reason, string rule, bool close, Verdict verdict = Verdict.Deny)
    {
        if (_x is null) BeginExchange();
        if (close) _keepAlive = false;
        var page = Encoding.UTF8.GetBytes(ErrorPages.Html(status, reason, _x!.Id, status == 403 ? rule : null));
        try
        {
            ResponseHeadWriter.StatusLine(_out, status, null);
            ResponseHeadWriter.Header(_out, "Content-Type", ErrorPages.ContentType);
            ResponseHeadWriter.Header(_out, "Content-Length", page.Length);
            ResponseHeadWriter.Header(_out, "X-Bastion-Request-Id", _x.Id);
            ResponseHeadWriter.Header(_out, "Via", ViaValue);
            if (status == 407) ResponseHeadWriter.Header(_out, "Proxy-Authenticate", "Basic realm=\"bastion\"");
            if (status == 405) ResponseHeadWriter.Header(_out, "Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, CONNECT");
            ResponseHeadWriter.Header(_out, "Connection", _keepAlive ? "keep-alive" : "close");
            ResponseHeadWriter.EndHead(_out);
            if (_head.Method != "HEAD") _out.Write(page);
            await FlushAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException) { _keepAlive = false; }
        _x.Status = status;
        LogExchange(status, rule, reason, verdict);
        return _keepAlive;
    }

    ValueTask<FlushResult> FlushAsync()
    {
        _x?.AddOut(_out.UnflushedBytes);
        return _out.FlushAsync(conn.Aborted);
    }

    /// <summary>The exchange's one log line (and its metrics): status, verdict, rule, reason; bytes were counted as they moved.</summary>
    void LogExchange(int status, string rule, string? reason, Verdict verdict)
    {
        var x = _x!;
        x.Status = status;
        x.User = _user;
        if (verdict == Verdict.Allow) x.Allow(rule, reason);
        else x.Deny(rule, reason);
        x.Close();
    }
}
