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
    public ClientConnection? Conn;
    public CompiledRoute? Route;
    public UpstreamTarget? Target;
    public Decision Decision;
    public Decision? ResponseDenied;
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
        _transformer = new BastionTransformer();
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
        a.Host = NormalizeHost(req.Host.Host);
        a.Path = req.Path.HasValue ? req.Path.Value : "/";
        a.Headers = new HeaderSource(req.Headers);
        if (st.NeedsUrl) a.Url = req.Scheme + "://" + req.Host.Value + req.PathBase.Value + req.Path.Value + req.QueryString.Value;

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
            else if (!await st.Runtime.Identity.VerifyAsync(user, password, http.RequestAborted).ConfigureAwait(false))
            {
                bad = "bad credentials";
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
                group.Answered(target, http.Response.StatusCode);
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
        ForwarderError.RequestTimedOut => $"upstream {t.Prefix} did not answer in time",
        ForwarderError.Request or ForwarderError.RequestCanceled => $"upstream {t.Prefix} failed: {Innermost(ex)}",
        ForwarderError.RequestBodyClient when TooLarge(ex) => "request body over the limit",
        _ => $"{err}: {Innermost(ex)}",
    };

    static string Innermost(Exception? e)
    {
        if (e is null) return "unknown error";
        while (e.InnerException is not null) e = e.InnerException;
        return e.Message;
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

    void Log(HttpContext http, RequestState rs, Verdict verdict, int status, string? rule, string? reason)
    {
        var req = http.Request;
        long bytesIn = rs.InCounter?.Count ?? rs.BytesIn;
        long bytesOut = rs.OutCounter?.Count ?? rs.BytesOut;
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
            Request = rs.Attrs.Url is { } url ? $"{req.Method} {url}" : $"{req.Method} {req.Scheme}://{req.Host.Value}{req.Path.Value}{req.QueryString.Value}",
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
sealed class BastionTransformer : HttpTransformer
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
        if (st.Config.Via)
        {
            var version = req.Protocol switch { "HTTP/2" => "2", "HTTP/3" => "3", "HTTP/1.0" => "1.0", _ => "1.1" };
            h.TryAddWithoutValidation("Via", $"{version} bastion");
        }
        var path = rs.Route!.UpstreamPath(req.Path);
        proxyRequest.RequestUri = RequestUtilities.MakeDestinationAddress(destinationPrefix, path, req.QueryString);
    }

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
        if (proxyResponse is not null && rs.State.Policy.HasResponseRules)
        {
            var a = rs.Attrs;
            a.ContentType = proxyResponse.Content.Headers.ContentType?.MediaType;
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
            if (proxyResponse.Content.Headers.ContentLength is long n) rs.BytesOut = n;
            else if (http.Response.StatusCode is not (101 or 204 or 304) && !HttpMethods.IsHead(http.Request.Method))
            {
                rs.OutCounter = new CountingStream(http.Response.Body);
                http.Response.Body = rs.OutCounter;
            }
        }
        return copy;
    }
}
