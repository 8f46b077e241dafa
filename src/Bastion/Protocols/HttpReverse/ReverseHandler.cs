using System.Diagnostics;
using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using System.Text;
using Bastion.Configuration;
using Bastion.Hosting;
using Bastion.Identity;
using Bastion.Observability;
using Bastion.Policy;
using Bastion.Policy.Canonical;
using Bastion.Protocols.Http.Shared;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Primitives;
using Yarp.ReverseProxy.Forwarder;

namespace Bastion.Protocols.HttpReverse;

/// <summary>What one request carries through the pipeline and the transformer.</summary>
sealed class RequestState
{
    public required string Id;
    public required long Start;
    public required ReverseState State;
    public readonly RequestAttributes Attrs = new();
    /// <summary>The request target in its one canonical form: what is judged, routed and forwarded.</summary>
    public readonly CanonicalTarget Canonical = new();
    /// <summary>The protocols the request asks to upgrade to, lower-case (null: none).</summary>
    public string[]? Upgrade;
    /// <summary>The 101 was relayed and logged: the line at the end is the tunnel's closing line.</summary>
    public bool TunnelOpen;
    /// <summary>Bytes of an HTTP/1.1 upgraded connection, each way.</summary>
    public TunnelCounter? Tunnel;
    public ClientConnection? Conn;
    public CompiledRoute? Route;
    public UpstreamTarget? Target;
    public Decision Decision;
    public Decision? ResponseDenied;
    /// <summary>The upstream's response could not be relayed (ambiguous framing, unrequested 101): answered 502.</summary>
    public string? ResponseRefused;
    public bool StripAuthorization;
    public long BytesIn, BytesOut;
    public CountingStream? InCounter, OutCounter;
    public long ResponseHeadersAt;
}

/// <summary>Request headers as the policy engine sees them, without copying.</summary>
sealed class HeaderSource(IHeaderDictionary headers) : IHeaderSource
{
    public string? Get(string name) =>
        headers.TryGetValue(name, out var v) && v.Count > 0 ? (v.Count == 1 ? v[0] : string.Join(", ", v.ToArray())) : null;

    public bool TryGetLine(string name, int index, out string value)
    {
        value = headers.TryGetValue(name, out var v) && index < v.Count ? v[index] ?? "" : "";
        return index < v.Count;
    }
}

/// <summary>
/// The per-request pipeline: rate limit, body limit, authentication, policy, route, balance, forward (YARP), log.
/// Every path ends in exactly one access-log line through <see cref="ListenerContext.Record"/>.
/// </summary>
sealed class ReverseHandler
{
    readonly ListenerContext _ctx;
    readonly IHttpForwarder _forwarder;
    readonly BastionTransformer _transformer;
    readonly object _rebuild = new();
    volatile ReverseState _state;

    public ReverseHandler(ListenerContext ctx, IHttpForwarder forwarder)
    {
        _ctx = ctx;
        _forwarder = forwarder;
        _transformer = new BastionTransformer(this);
        _state = ReverseState.Build(ctx, ctx.Runtime, null);
    }

    /// <summary>The state for the configuration in force; rebuilt once when reload swapped the snapshot.</summary>
    public ReverseState State()
    {
        var st = _state;
        var rt = _ctx.Runtime;
        if (ReferenceEquals(st.Runtime, rt)) return st;
        lock (_rebuild)
        {
            st = _state;
            if (ReferenceEquals(st.Runtime, rt)) return st;
            try { st = ReverseState.Build(_ctx, rt, st); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
            {
                // A file the new configuration names cannot be read: keep serving with what we have.
                Console.Error.WriteLine($"bastion: listener {_ctx.Name}: reload kept the previous routes: {e.Message}");
                st = st with { Runtime = rt };
            }
            _state = st;
            return st;
        }
    }

    public async Task HandleAsync(HttpContext http)
    {
        var st = State();
        var rs = new RequestState { Id = Ids.Next(), Start = Stopwatch.GetTimestamp(), State = st };
        try
        {
            await ServeAsync(http, rs).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or Microsoft.AspNetCore.Connections.ConnectionAbortedException or ObjectDisposedException)
        {
            // The client went away: nothing to answer.
            Log(http, rs, rs.Decision.RuleName is null ? Verdict.Deny : rs.Decision.Verdict, 499, rs.Decision.RuleName, "client closed the connection");
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"bastion: listener {_ctx.Name}: request {rs.Id} failed: {e}");
            if (!http.Response.HasStarted)
                await Page(http, 500, $"500 Internal Server Error\nrequest {rs.Id} failed in bastion\n", rs).ConfigureAwait(false);
            Log(http, rs, Verdict.Deny, 500, "error", e.GetType().Name);
        }
    }

    async Task ServeAsync(HttpContext http, RequestState rs)
    {
        var st = rs.State;
        var cfg = st.Config;
        var req = http.Request;
        var a = rs.Attrs;
        rs.Conn = http.Features.Get<ClientConnection>();
        var source = http.Connection.RemoteIpAddress ?? IPAddress.None;
        if (source.IsIPv4MappedToIPv6) source = source.MapToIPv4();
        a.Source = source;
        a.Port = http.Connection.LocalPort;
        a.Method = req.Method;
        a.Headers = new HeaderSource(req.Headers);
        a.PathIgnoreCase = cfg.PathIgnoreCase;
        // The one canonical form (SPEC 2.1): the Host as every host is judged, the raw target normalised; what is
        // judged is what is routed and forwarded.
        string? host = null, hostError = null;
        if (req.Host.HasValue && !HostName.TryNormalize(req.Host.Host, out host, out hostError))
        {
            await Deny(http, rs, 400, "Bad Request", "protocol", $"bad Host: {hostError}").ConfigureAwait(false);
            return;
        }
        a.Host = host;
        var raw = http.Features.Get<IHttpRequestFeature>()?.RawTarget;
        if (raw is null or "*") a.Path = req.Path.HasValue ? req.Path.Value : "/";
        else
        {
            var status = RequestTarget.Parse(raw, cfg.AmbiguousPaths, rs.Canonical, out var why);
            if (status != TargetStatus.Ok)
            {
                await Deny(http, rs, 400, "Bad Request", status == TargetStatus.Ambiguous ? "protocol.ambiguous_paths" : "protocol",
                    $"{(status == TargetStatus.Ambiguous ? "ambiguous" : "malformed")} request target: {why}").ConfigureAwait(false);
                return;
            }
            if (rs.Canonical.Host is null && host is not null) rs.Canonical.SetAuthority(req.Scheme, host, req.Host.Port ?? CanonicalTarget.DefaultPort(req.Scheme));
            a.Path = rs.Canonical.PolicyPath;
            if (st.NeedsUrl) a.Url = rs.Canonical.Url;
        }
        rs.Upgrade = RequestedUpgrade(http);
        if (rs.Upgrade is not null)
        {
            a.Upgrade = string.Join(", ", rs.Upgrade);
            if (http.Features.Get<IHttpUpgradeFeature>() is { IsUpgradableRequest: true } upgrade)
                http.Features.Set<IHttpUpgradeFeature>(rs.Tunnel = new TunnelCounter(upgrade));
        }
        if (cfg.RefuseConflictingHeaders && st.Policy.ConflictingHeader(a.Headers) is { } conflict)
        {
            await Deny(http, rs, 400, "Bad Request", "protocol.conflicting_headers", $"conflicting values of header '{conflict}', which a rule judges").ConfigureAwait(false);
            return;
        }

        if (st.Rate is { } rate && !rate.TryTake(source, out var retryAfter))
        {
            http.Response.Headers.RetryAfter = retryAfter.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await Deny(http, rs, 429, "Too Many Requests", "limits.rate", "request rate limit exceeded").ConfigureAwait(false);
            return;
        }
        if (req.ContentLength is long declared)
        {
            if (declared > cfg.Limits.MaxRequestBody)
            {
                await Deny(http, rs, 413, "Content Too Large", "limits.max_request_body", $"request body over {cfg.Limits.MaxRequestBody} bytes").ConfigureAwait(false);
                return;
            }
            rs.BytesIn = declared;
        }
        else if (http.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody == true)
        {
            rs.InCounter = new CountingStream(req.Body);
            req.Body = rs.InCounter;
        }

        if (cfg.Authenticate)
        {
            var header = req.Headers.Authorization;
            string? bad = null;
            if (!IdentityStore.TryParseBasic(header.Count > 0 ? header[0] : null, out var user, out var password))
                bad = "credentials required";
            else if (await st.Runtime.Identity.LoginAsync(user, password, source, http.RequestAborted).ConfigureAwait(false) is var login && login != LoginResult.Ok)
            {
                bad = login == LoginResult.Throttled ? "too many failed logins from this address: try again later" : "bad credentials";
                _ctx.Metrics.AuthFailure(_ctx.Name);
            }
            if (bad is not null)
            {
                http.Response.Headers.WWWAuthenticate = "Basic realm=\"bastion\", charset=\"UTF-8\"";
                await Deny(http, rs, 401, "Unauthorized", "authenticate", bad).ConfigureAwait(false);
                return;
            }
            a.User = user;
            rs.StripAuthorization = true;
            if (rs.Conn is { } c) c.User = user;
        }
        else if (rs.Conn?.User is { } fromFront)
        {
            // A verified client certificate name from a trusted PROXY v2 front.
            a.User = fromFront;
        }

        var d = st.Policy.Evaluate(a);
        // An upgrade turns the connection into a tunnel the policy no longer sees: only a rule that names it allows it.
        if (d.Allowed && rs.Upgrade is not null && !st.Policy.AllowsUpgrade(d))
            d = Decision.Deny(d.RuleName, $"upgrade to {a.Upgrade} needs a rule that allows it (upgrade: {rs.Upgrade[0]})");
        rs.Decision = d;
        if (!d.Allowed)
        {
            await Deny(http, rs, 403, "Forbidden", d.RuleName, d.Reason ?? "denied by policy").ConfigureAwait(false);
            return;
        }

        var route = st.Routes.Match(a.Host, req.Method, a.Path!, req.Headers);
        if (route is null)
        {
            await Page(http, 404, $"404 Not Found\nrequest {rs.Id}: no route for {req.Host.Value}{req.Path.Value}\n", rs).ConfigureAwait(false);
            Log(http, rs, Verdict.Allow, 404, d.RuleName, "no route");
            return;
        }
        rs.Route = route;
        await ForwardAsync(http, rs, route).ConfigureAwait(false);
    }

    async Task ForwardAsync(HttpContext http, RequestState rs, CompiledRoute route)
    {
        var st = rs.State;
        var group = route.Upstream;
        var req = http.Request;
        bool upgrade = http.Features.Get<IHttpUpgradeFeature>()?.IsUpgradableRequest == true
            || http.Features.Get<IHttpExtendedConnectFeature>()?.IsExtendedConnect == true;
        var config = upgrade ? st.UpgradeConfig : st.RequestConfig;
        // A request without a body can be sent again to another target when the first cannot be reached.
        bool retriable = rs.InCounter is null && (req.ContentLength ?? 0) == 0;
        http.Features.Set(rs);
        string? reason = null;
        for (int attempt = 0; ; attempt++)
        {
            var target = group.Pick();
            if (target is null)
            {
                await Page(http, 503, $"503 Service Unavailable\nrequest {rs.Id}: no healthy upstream in '{group.Name}'\n", rs).ConfigureAwait(false);
                Log(http, rs, Verdict.Allow, 503, rs.Decision.RuleName, reason is null ? "no healthy upstream" : $"no healthy upstream ({reason})");
                return;
            }
            rs.Target = target;
            target.Begin();
            ForwarderError err;
            try { err = await _forwarder.SendAsync(http, target.Prefix, group.Invoker, config, _transformer).ConfigureAwait(false); }
            finally { target.End(); }

            if (err == ForwarderError.None)
            {
                if (rs.ResponseDenied is { } rd)
                {
                    Log(http, rs, Verdict.Deny, 403, rd.RuleName, rd.Reason ?? "response denied by policy");
                    return;
                }
                if (rs.ResponseRefused is { } refused)
                {
                    Log(http, rs, Verdict.Allow, 502, rs.Decision.RuleName, refused);
                    return;
                }
                group.Answered(target, http.Response.StatusCode);
                if (rs.TunnelOpen)
                {
                    // The decision line went out when the tunnel opened; this one closes it, with its bytes.
                    Log(http, rs, Verdict.Allow, 101, rs.Decision.RuleName, $"{rs.Attrs.Upgrade} tunnel closed", closing: true);
                    return;
                }
                Log(http, rs, Verdict.Allow, http.Response.StatusCode, rs.Decision.RuleName, rs.Decision.Reason);
                return;
            }

            var ex = http.Features.Get<IForwarderErrorFeature>()?.Exception;
            bool connectFailed = err is ForwarderError.Request or ForwarderError.RequestCanceled
                && !http.RequestAborted.IsCancellationRequested && IsConnectFailure(ex);
            if (connectFailed) group.ConnectFailed(target);
            reason = Describe(err, ex, target);
            if (connectFailed && retriable && attempt + 1 < group.Targets.Length && !http.Response.HasStarted)
            {
                http.Features.Set<IForwarderErrorFeature>(null);
                http.Response.StatusCode = 200;
                continue;
            }
            int status = http.Response.StatusCode;
            if (!http.Response.HasStarted)
            {
                status = err switch
                {
                    ForwarderError.RequestTimedOut => 504,
                    ForwarderError.RequestBodyClient when TooLarge(ex) => 413,
                    ForwarderError.RequestBodyClient => 400,
                    _ when status < 400 => 502,
                    _ => status,
                };
                if (!http.RequestAborted.IsCancellationRequested)
                    await Page(http, status, $"{status} {ReasonPhrase(status)}\nrequest {rs.Id}: {reason}\n", rs).ConfigureAwait(false);
            }
            Log(http, rs, status == 413 ? Verdict.Deny : Verdict.Allow, status, status == 413 ? "limits.max_request_body" : rs.Decision.RuleName, reason);
            return;
        }
    }

    static bool IsConnectFailure(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
        {
            if (e is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError or HttpRequestError.SecureConnectionError }) return true;
            if (e is SocketException or TimeoutException) return true;
        }
        return false;
    }

    /// <summary>Kestrel's body limit hit while a chunked body streamed (YARP wraps the exception).</summary>
    static bool TooLarge(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
            if (e is BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge }) return true;
        return false;
    }

    static string Describe(ForwarderError err, Exception? ex, UpstreamTarget t) => err switch
    {
        ForwarderError.RequestTimedOut => $"upstream {Redact.Url(t.Prefix)} did not answer in time",
        ForwarderError.Request or ForwarderError.RequestCanceled => $"upstream {Redact.Url(t.Prefix)} failed: {Innermost(ex)}",
        ForwarderError.RequestBodyClient when TooLarge(ex) => "request body over the limit",
        _ => $"{err}: {Innermost(ex)}",
    };

    static string Innermost(Exception? e)
    {
        if (e is null) return "unknown error";
        while (e.InnerException is not null) e = e.InnerException;
        return e.Message;
    }

    /// <summary>
    /// What the request asks to upgrade to: an HTTP/1.1 `Upgrade` with `Connection: upgrade`, or HTTP/2's extended
    /// CONNECT. `h2c` is never an upgrade here (never forwarded: the request goes on as plain HTTP/1.1).
    /// </summary>
    static string[]? RequestedUpgrade(HttpContext http)
    {
        if (http.Features.Get<IHttpExtendedConnectFeature>() is { IsExtendedConnect: true, Protocol: { } p })
            return [p.ToLowerInvariant()];
        if (http.Features.Get<IHttpUpgradeFeature>()?.IsUpgradableRequest != true) return null;
        List<string>? list = null;
        foreach (var line in http.Request.Headers.Upgrade)
        {
            if (line is null) continue;
            foreach (var range in line.AsSpan().Split(','))
            {
                var token = HeaderValue.TrimOws(line.AsSpan()[range]);
                if (token.IsEmpty || token.Equals("h2c", StringComparison.OrdinalIgnoreCase)) continue;
                (list ??= []).Add(token.ToString().ToLowerInvariant());
            }
        }
        return list?.ToArray();
    }

    async Task Deny(HttpContext http, RequestState rs, int status, string phrase, string rule, string reason)
    {
        await Page(http, status, $"{status} {phrase}\nrequest {rs.Id} denied by bastion: {reason} (rule {rule})\n", rs).ConfigureAwait(false);
        Log(http, rs, Verdict.Deny, status, rule, reason);
    }

    internal static Task Page(HttpContext http, int status, string text, RequestState? rs = null)
    {
        var resp = http.Response;
        resp.StatusCode = status;
        resp.ContentType = "text/plain; charset=utf-8";
        resp.Headers.CacheControl = "no-store";
        var bytes = Encoding.UTF8.GetBytes(text);
        resp.ContentLength = bytes.Length;
        if (rs is not null) rs.BytesOut = bytes.Length;
        return resp.Body.WriteAsync(bytes).AsTask();
    }

    static string ReasonPhrase(int status) => status switch
    {
        400 => "Bad Request",
        413 => "Content Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(status),
    };

    /// <summary>A 101 is being relayed: the tunnel is logged when it opens (and again when it closes).</summary>
    internal void TunnelOpened(HttpContext http, RequestState rs)
    {
        rs.TunnelOpen = true;
        _ctx.Record(new AccessEvent
        {
            Id = rs.Id,
            Listener = _ctx.Name,
            Type = _ctx.TypeName,
            Client = rs.Conn?.ClientText ?? $"{http.Connection.RemoteIpAddress}:{http.Connection.RemotePort}",
            User = rs.Attrs.User,
            Request = RequestText(http, rs),
            Verdict = Verdict.Allow,
            Rule = rs.Decision.RuleName,
            Reason = $"upgraded to {rs.Attrs.Upgrade}: tunnel open",
            Status = 101,
            DurationMs = Stopwatch.GetElapsedTime(rs.Start).TotalMilliseconds,
        });
    }

    static string RequestText(HttpContext http, RequestState rs)
    {
        var req = http.Request;
        if (rs.Attrs.Url is { } url) return $"{req.Method} {url}";
        if (rs.Canonical.Host is not null) return $"{req.Method} {rs.Canonical.Url}";
        return $"{req.Method} {req.Scheme}://{req.Host.Value}{req.Path.Value}{req.QueryString.Value}";
    }

    void Log(HttpContext http, RequestState rs, Verdict verdict, int status, string? rule, string? reason, bool closing = false)
    {
        var req = http.Request;
        long bytesIn = rs.InCounter?.Count ?? rs.BytesIn;
        long bytesOut = rs.OutCounter?.Count ?? rs.BytesOut;
        if (closing && rs.Tunnel is { } t)
        {
            bytesIn += Interlocked.Read(ref t.FromClient);
            bytesOut += Interlocked.Read(ref t.ToClient);
        }
        if (rs.Conn is { } c)
        {
            Interlocked.Add(ref c.BytesIn, bytesIn);
            Interlocked.Add(ref c.BytesOut, bytesOut);
        }
        _ctx.Metrics.Bytes(_ctx.Name, bytesIn, bytesOut);
        if (rs.ResponseHeadersAt != 0)
            _ctx.Metrics.UpstreamLatency(_ctx.Name, Stopwatch.GetElapsedTime(rs.Start, rs.ResponseHeadersAt));
        _ctx.Record(new AccessEvent
        {
            Id = rs.Id,
            Listener = _ctx.Name,
            Type = _ctx.TypeName,
            Client = rs.Conn?.ClientText ?? $"{http.Connection.RemoteIpAddress}:{http.Connection.RemotePort}",
            User = rs.Attrs.User,
            Event = closing ? "connection" : "request",
            Request = RequestText(http, rs),
            Verdict = verdict,
            Rule = rule,
            Reason = reason,
            Status = status,
            BytesIn = bytesIn,
            BytesOut = bytesOut,
            DurationMs = Stopwatch.GetElapsedTime(rs.Start).TotalMilliseconds,
        });
    }
}

/// <summary>
/// What YARP calls around the upstream exchange: the request gets X-Forwarded-*, Via and its rewritten path; the
/// response head is put to the policy's response rules before any of it is copied to the client.
/// </summary>
sealed class BastionTransformer(ReverseHandler handler) : HttpTransformer
{
    public override async ValueTask TransformRequestAsync(HttpContext http, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken ct)
    {
        await base.TransformRequestAsync(http, proxyRequest, destinationPrefix, ct).ConfigureAwait(false);
        var rs = http.Features.Get<RequestState>()!;
        var st = rs.State;
        var req = http.Request;
        var h = proxyRequest.Headers;
        // The upstream sees its own name (as YARP and nginx do by default); the client's is in X-Forwarded-Host.
        h.Host = null;
        if (rs.StripAuthorization) h.Authorization = null;

        var peer = http.Connection.RemoteIpAddress;
        bool trusted = peer is not null && st.TrustedProxies.Count > 0 && st.TrustedProxies.Contains(peer);
        var client = peer is null ? "unknown" : (peer.IsIPv4MappedToIPv6 ? peer.MapToIPv4() : peer).ToString();
        Forwarded(h, req.Headers, "X-Forwarded-For", client, trusted);
        Forwarded(h, req.Headers, "X-Forwarded-Proto", req.Scheme, trusted);
        if (req.Host.HasValue) Forwarded(h, req.Headers, "X-Forwarded-Host", req.Host.Value, trusted);
        else h.Remove("X-Forwarded-Host");
        // RFC 7239 Forwarded and X-Real-IP say the same thing and are trusted the same way: appended to (or kept)
        // from a trusted front, replaced from anyone else.
        var forwarded = $"for={ForwardedNode(client)};proto={req.Scheme}" + (req.Host.HasValue ? $";host=\"{req.Host.Value}\"" : "");
        Forwarded(h, req.Headers, "Forwarded", forwarded, trusted);
        h.Remove("X-Real-IP");
        h.TryAddWithoutValidation("X-Real-IP", trusted && req.Headers.TryGetValue("X-Real-IP", out var real) && !StringValues.IsNullOrEmpty(real) ? real.ToString() : client);
        if (st.Config.Via)
        {
            var version = req.Protocol switch { "HTTP/2" => "2", "HTTP/3" => "3", "HTTP/1.0" => "1.0", _ => "1.1" };
            h.TryAddWithoutValidation("Via", $"{version} bastion");
        }
        // Connection and Upgrade of an h2c upgrade are not copied (YARP forwards websocket upgrades only); its settings go too.
        h.Remove("HTTP2-Settings");
        if (rs.Canonical.Host is null)
        {
            proxyRequest.RequestUri = RequestUtilities.MakeDestinationAddress(destinationPrefix, rs.Route!.UpstreamPath(req.Path), req.QueryString);
            return;
        }
        // The canonical path and query, sent byte for byte (no second decoding or re-encoding on the way out).
        var path = rs.Route!.UpstreamPath(rs.Canonical.Path);
        var prefix = destinationPrefix.EndsWith('/') ? destinationPrefix[..^1] : destinationPrefix;
        proxyRequest.RequestUri = new Uri(prefix + path + rs.Canonical.Query, new UriCreationOptions { DangerousDisablePathAndQueryCanonicalization = true });
    }

    /// <summary>A Forwarded `for=` node: IPv6 quoted in brackets (RFC 7239 §6).</summary>
    static string ForwardedNode(string client) => client.Contains(':') ? $"\"[{client}]\"" : client;

    /// <summary>Appended to what a trusted front sent; anyone else's value is replaced, so clients cannot forge it.</summary>
    static void Forwarded(System.Net.Http.Headers.HttpRequestHeaders h, IHeaderDictionary incoming, string name, string value, bool trusted)
    {
        h.Remove(name);
        if (trusted && incoming.TryGetValue(name, out var prior) && !StringValues.IsNullOrEmpty(prior))
            value = string.Join(", ", prior.ToArray()) + ", " + value;
        h.TryAddWithoutValidation(name, value);
    }

    public override async ValueTask<bool> TransformResponseAsync(HttpContext http, HttpResponseMessage? proxyResponse, CancellationToken ct)
    {
        var rs = http.Features.Get<RequestState>()!;
        rs.ResponseHeadersAt = System.Diagnostics.Stopwatch.GetTimestamp();
        if (proxyResponse is not null && UpstreamResponses.Refusal(proxyResponse, rs.Upgrade) is { } refusal)
        {
            // Never relayed; YARP disposes the unread response, which drops the upstream connection.
            rs.ResponseRefused = $"upstream sent {refusal}";
            http.Response.Headers.Clear();
            await ReverseHandler.Page(http, 502, $"502 Bad Gateway\nrequest {rs.Id}: {rs.ResponseRefused}\n", rs).ConfigureAwait(false);
            return false;
        }
        if (proxyResponse is not null && rs.State.Policy.HasResponseRules)
        {
            var a = rs.Attrs;
            a.ContentType = UpstreamResponses.ContentTypes(proxyResponse);
            a.Size = proxyResponse.Content.Headers.ContentLength ?? -1;
            var d = rs.State.Policy.EvaluateResponse(a);
            if (!d.Allowed)
            {
                // Nothing of the upstream's response has been sent: replace it whole.
                rs.ResponseDenied = d;
                http.Response.Headers.Clear();
                await ReverseHandler.Page(http, 403,
                    $"403 Forbidden\nrequest {rs.Id} denied by bastion: {d.Reason ?? "response denied by policy"} (rule {d.RuleName})\n", rs).ConfigureAwait(false);
                return false;
            }
        }
        var copy = await base.TransformResponseAsync(http, proxyResponse, ct).ConfigureAwait(false);
        if (proxyResponse is not null && copy)
        {
            if (proxyResponse.StatusCode == System.Net.HttpStatusCode.SwitchingProtocols) handler.TunnelOpened(http, rs);
            else if (proxyResponse.Content.Headers.ContentLength is long n) rs.BytesOut = n;
            else if (http.Response.StatusCode is not (204 or 304) && !HttpMethods.IsHead(http.Request.Method))
            {
                rs.OutCounter = new CountingStream(http.Response.Body);
                http.Response.Body = rs.OutCounter;
            }
        }
        return copy;
    }
}
