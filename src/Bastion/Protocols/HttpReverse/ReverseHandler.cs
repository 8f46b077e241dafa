using System.Net;
using System.Net.Sockets;
using System.Text;
using Bastion.Gateway;
using Bastion.Configuration;
using Bastion.Hosting;
using Bastion.Protocols.Http;
using Bastion.Observability;
using Bastion.Policy;
using Bastion.Policy.Canonical;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Yarp.ReverseProxy.Forwarder;

namespace Bastion.Protocols.HttpReverse;

/// <summary>
/// The HTTP/2 path (Kestrel, after TLS negotiated h2): the per-request pipeline on YARP: rate limit, body limit,
/// authentication, policy, route, balance, forward (YARP), log. HTTP/1.1 is <see cref="ReverseSession"/>'s.
/// Every path ends in exactly one access-log line through <see cref="ListenerContext.Record"/>.
/// </summary>
sealed class ReverseHandler
{
    readonly ListenerContext _ctx;
    readonly ReverseStates _states;
    readonly IHttpForwarder _forwarder;
    readonly BastionTransformer _transformer;

    public ReverseHandler(ListenerContext ctx, ReverseStates states, IHttpForwarder forwarder)
    {
        _ctx = ctx;
        _states = states;
        _forwarder = forwarder;
        // The transformer tells the handler when a 101 opens a tunnel (its decision line is written then).
        _transformer = new BastionTransformer(this);
    }

    public ReverseState State() => _states.Current();

    public async Task HandleAsync(HttpContext http)
    {
        var st = State();
        var conn = http.Features.Get<ClientConnection>();
        var x = conn is not null ? _ctx.Open(conn, ExchangeKinds.Request) : _ctx.OpenRefused($"{http.Connection.RemoteIpAddress}:{http.Connection.RemotePort}");
        var rs = new RequestState { X = x, State = st, Conn = conn };
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
                await Page(http, 500, "the request failed inside the gateway", rs).ConfigureAwait(false);
            Log(http, rs, Verdict.Deny, 500, PseudoRules.Error, e.GetType().Name);
        }
    }

    /// <summary>identify → limits → authenticate → decide → route → forward; each refusal answers and logs once.</summary>
    async Task ServeAsync(HttpContext http, RequestState rs)
    {
        if (!await IdentifyAsync(http, rs).ConfigureAwait(false)) return;
        if (!await LimitsAsync(http, rs).ConfigureAwait(false)) return;
        if (!await AuthenticateAsync(http, rs).ConfigureAwait(false)) return;

        var d = HttpDecisions.Decide(rs.State.Policy, rs.Attrs);
        // An upgrade turns the connection into a tunnel the policy no longer sees: only a rule that names it allows it.
        if (d.Allowed && rs.Upgrade is not null && !rs.State.Policy.AllowsUpgrade(d))
            d = Decision.Deny(d.RuleName, $"upgrade to {rs.Attrs.Upgrade} needs a rule that allows it (upgrade: {rs.Upgrade[0]})");
        rs.Decision = d;
        if (!d.Allowed)
        {
            await Deny(http, rs, 403, d.RuleName, d.Reason ?? "denied by policy").ConfigureAwait(false);
            return;
        }

        var req = http.Request;
        var route = rs.State.Routes.Match(rs.Attrs.Host, req.Method, rs.Attrs.Path!, new KestrelRouteHeaders(req.Headers));
        if (route is null)
        {
            await Page(http, 404, $"no route for {req.Host.Value}{req.Path.Value}", rs).ConfigureAwait(false);
            Log(http, rs, Verdict.Allow, 404, d.RuleName, "no route");
            return;
        }
        rs.Route = route;
        await ForwardAsync(http, rs, route).ConfigureAwait(false);
    }

    /// <summary>
    /// The request's attributes, with the mapping `explain` uses too (<see cref="HttpAttributes.OriginTarget"/>): the
    /// one canonical form (SPEC 2.1), the Host as every host is judged and the raw target normalised; what is judged
    /// is what is routed and forwarded. A malformed or ambiguous target, or conflicting lines of a judged header
    /// when the listener refuses them, is answered 400 here.
    /// </summary>
    async Task<bool> IdentifyAsync(HttpContext http, RequestState rs)
    {
        var req = http.Request;
        var a = rs.Attrs;
        var cfg = rs.State.Config;
        var source = http.Connection.RemoteIpAddress ?? IPAddress.None;
        if (source.IsIPv4MappedToIPv6) source = source.MapToIPv4();
        a.Source = source;
        a.Headers = new HeaderSource(req.Headers);
        var raw = http.Features.Get<IHttpRequestFeature>()?.RawTarget ?? "/";
        var status = HttpAttributes.OriginTarget(a, req.Method, req.Scheme, req.Host.HasValue ? req.Host.Host : null, req.Host.Port,
            raw, http.Connection.LocalPort, cfg, rs.Canonical, rs.State.NeedsUrl, out var targetError);
        if (status != TargetStatus.Ok)
        {
            await Deny(http, rs, 400, status == TargetStatus.Ambiguous ? PseudoRules.AmbiguousPaths : PseudoRules.Protocol, targetError!).ConfigureAwait(false);
            return false;
        }
        rs.Upgrade = RequestedUpgrade(http);
        if (rs.Upgrade is not null) a.Upgrade = string.Join(", ", rs.Upgrade);
        if (cfg.RefuseConflictingHeaders && rs.State.Policy.ConflictingHeader(a.Headers) is { } conflict)
        {
            await Deny(http, rs, 400, PseudoRules.ConflictingHeaders, $"conflicting values of header '{conflict}', which a rule judges").ConfigureAwait(false);
            return false;
        }
        // A verified client certificate name from a trusted PROXY v2 front, unless the listener authenticates itself.
        if (rs.Conn?.User is { } fromFront && !cfg.Authenticate) a.User = fromFront;
        return true;
    }

    /// <summary>
    /// What the request asks to upgrade to: HTTP/2's extended CONNECT (RFC 8441) is the only upgrade on this path
    /// (HTTP/1.1 `Upgrade`, and `h2c`, are <see cref="ReverseSession"/>'s).
    /// </summary>
    static string[]? RequestedUpgrade(HttpContext http) =>
        http.Features.Get<IHttpExtendedConnectFeature>() is { IsExtendedConnect: true, Protocol: { } p } ? [p.ToLowerInvariant()] : null;

    /// <summary>A 101 is being relayed: the request's decision line is written now, as the tunnel opens.</summary>
    internal void TunnelOpened(HttpContext http, RequestState rs)
    {
        rs.TunnelOpen = true;
        Log(http, rs, Verdict.Allow, 101, rs.Decision.RuleName, $"upgraded to {rs.Attrs.Upgrade}: tunnel open");
    }

    /// <summary>The tunnel closed: a transfer line (YARP relays an HTTP/2 tunnel's bytes itself: they are not counted).</summary>
    void TunnelClosed(RequestState rs)
    {
        if (rs.Conn is not { } conn) return;
        var t = _ctx.Open(conn, ExchangeKinds.Transfer, rs.Id);
        t.Request = rs.X.Request;
        t.Status = 101;
        // No verdict: the decision was counted when the tunnel opened.
        t.Reason = $"{rs.Attrs.Upgrade} tunnel closed";
        t.Close();
    }

    /// <summary>Rate and declared body size (429, 413); a body of unknown length is counted as it streams.</summary>
    async Task<bool> LimitsAsync(HttpContext http, RequestState rs)
    {
        var req = http.Request;
        var limits = rs.State.Config.Limits;
        if (rs.State.Rate is { } rate && !rate.TryTake(rs.Attrs.Source!, out var retryAfter))
        {
            http.Response.Headers.RetryAfter = retryAfter.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await Deny(http, rs, 429, PseudoRules.Rate, "request rate limit exceeded").ConfigureAwait(false);
            return false;
        }
        if (req.ContentLength is long declared)
        {
            if (declared > limits.MaxRequestBody)
            {
                await Deny(http, rs, 413, PseudoRules.MaxRequestBody, $"request body over {limits.MaxRequestBody} bytes").ConfigureAwait(false);
                return false;
            }
            rs.BytesIn = declared;
        }
        else if (http.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody == true)
        {
            rs.InCounter = new CountingStream(req.Body);
            req.Body = rs.InCounter;
        }
        return true;
    }

    /// <summary>`authenticate: true`: Basic credentials (401 otherwise); they are not passed upstream.</summary>
    async Task<bool> AuthenticateAsync(HttpContext http, RequestState rs)
    {
        if (!rs.State.Config.Authenticate) return true;
        var header = http.Request.Headers.Authorization;
        var auth = await HttpDecisions.AuthenticateAsync(_ctx, header.Count > 0 ? header[0] : null, rs.Attrs.Source, http.RequestAborted).ConfigureAwait(false);
        if (!auth.Ok)
        {
            http.Response.Headers.WWWAuthenticate = "Basic realm=\"bastion\", charset=\"UTF-8\"";
            // A failed login is logged with the name it tried (as Apache's %u and nginx's $remote_user are).
            if (auth.Tried is { } tried) rs.X.User = tried;
            await Deny(http, rs, 401, PseudoRules.Authenticate, auth.Failure!).ConfigureAwait(false);
            return false;
        }
        rs.Attrs.User = auth.User;
        rs.StripAuthorization = true;
        if (rs.Conn is { } c) c.User = auth.User;
        return true;
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
                await Page(http, 503, $"no healthy upstream in '{group.Name}'", rs).ConfigureAwait(false);
                Log(http, rs, Verdict.Allow, 503, rs.Decision.RuleName, reason is null ? "no healthy upstream" : $"no healthy upstream ({reason})");
                return;
            }
            rs.Target = target;
            rs.X.Upstream = target.Prefix;
            target.Begin();
            rs.X.UpstreamSent();
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
                    TunnelClosed(rs);
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
                    await Page(http, status, reason, rs).ConfigureAwait(false);
            }
            Log(http, rs, status == 413 ? Verdict.Deny : Verdict.Allow, status, status == 413 ? PseudoRules.MaxRequestBody : rs.Decision.RuleName, reason);
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

    async Task Deny(HttpContext http, RequestState rs, int status, string rule, string reason)
    {
        await Page(http, status, reason, rs, rule).ConfigureAwait(false);
        Log(http, rs, Verdict.Deny, status, rule, reason);
    }

    /// <summary>The gateway's own answer: the shared HTML error page with the reason, the rule of a policy denial and the request id.</summary>
    internal static Task Page(HttpContext http, int status, string reason, RequestState rs, string? rule = null)
    {
        var resp = http.Response;
        resp.StatusCode = status;
        resp.ContentType = ErrorPages.ContentType;
        resp.Headers.CacheControl = "no-store";
        resp.Headers["X-Bastion-Request-Id"] = rs.Id;
        var bytes = Encoding.UTF8.GetBytes(ErrorPages.Html(status, reason, rs.Id, rule));
        resp.ContentLength = bytes.Length;
        rs.BytesOut = bytes.Length;
        return resp.Body.WriteAsync(bytes).AsTask();
    }

    /// <summary>The request's one log line: bytes from the body counters (or the declared lengths), the verdict, the rule.</summary>
    void Log(HttpContext http, RequestState rs, Verdict verdict, int status, string? rule, string? reason)
    {
        var req = http.Request;
        var x = rs.X;
        x.AddIn(rs.InCounter?.Count ?? rs.BytesIn);
        x.AddOut(rs.OutCounter?.Count ?? rs.BytesOut);
        if (rs.Attrs.User is not null) x.User = rs.Attrs.User;
        x.Request = rs.Attrs.Url is { } url ? $"{req.Method} {url}"
            : rs.Canonical.Host is not null ? $"{req.Method} {rs.Canonical.Url}"
            : $"{req.Method} {req.Scheme}://{req.Host.Value}{req.Path.Value}{req.QueryString.Value}";
        x.Status = status;
        x.Protocol = req.Protocol;
        x.Referer = req.Headers.Referer.Count > 0 ? req.Headers.Referer.ToString() : null;
        x.UserAgent = req.Headers.UserAgent.Count > 0 ? req.Headers.UserAgent.ToString() : null;
        x.ContentType = http.Response.ContentType;
        if (verdict == Verdict.Allow) x.Allow(rule, reason);
        else x.Deny(rule, reason);
        x.Close();
    }
}
