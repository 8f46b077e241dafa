using System.Diagnostics;
using System.Net;
using System.Text;
using Bastion.Hosting;
using Bastion.Http.Forward;
using Bastion.Http.Reverse;
using Bastion.Observability;
using Bastion.Policy;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Yarp.ReverseProxy.Forwarder;

namespace Bastion.Http.Inspection;

/// <summary>
/// One HTTP/2 request inside an inspected tunnel: the same attributes, policy, response rules, pages and log line
/// as the HTTP/1.1 engine gives a request in a tunnel; YARP streams it to the origin over the tunnel's connection.
/// </summary>
sealed class InspectedHttp2Handler(ListenerContext ctx, IHttpForwarder forwarder)
{
    const string ViaValue = "2 bastion";
    readonly Transformer _transformer = new();

    /// <summary>What one request carries from the handler to the transformer and the log.</summary>
    sealed class Exchange
    {
        public required string Id;
        public required long Start;
        public readonly RequestAttributes Attrs = new();
        public required CompiledPolicy Policy;
        public Decision Decision;
        public Decision? ResponseDenied;
        public CountingStream? In, Out;
        public long BytesOut;
    }

    public async Task HandleAsync(HttpContext http)
    {
        var target = http.Features.Get<InspectedOrigin>()!;
        var conn = http.Features.Get<ClientConnection>()!;
        var x = new Exchange { Id = Ids.Next(), Start = Stopwatch.GetTimestamp(), Policy = ctx.Policy };
        var req = http.Request;
        var raw = http.Features.Get<IHttpRequestFeature>()?.RawTarget is { Length: > 0 } t && t[0] == '/' ? t : req.Path.Value + req.QueryString.Value;
        var uri = new Uri(target.Url(raw ?? "/"));
        var requestText = $"{req.Method} {uri}";
        try
        {
            var a = x.Attrs;
            a.Source = conn.Client.Address;
            a.User = conn.User;
            a.Method = req.Method;
            a.Host = target.Name;
            a.Port = target.Port;
            a.Path = uri.AbsolutePath;
            a.Url = uri.OriginalString;
            a.Sni = target.Sni;
            a.Headers = new HeaderSource(req.Headers);
            a.Size = req.ContentLength ?? -1;

            if (!string.Equals(req.Host.Value, target.Authority, StringComparison.OrdinalIgnoreCase)
                && !(target.Port == 443 && string.Equals(req.Host.Value, target.Authority + ":443", StringComparison.OrdinalIgnoreCase)))
            {
                await Page(http, x, 421, $"authority '{req.Host.Value}' does not match the tunnel's server name {target.Authority}", null).ConfigureAwait(false);
                Log(http, x, conn, target, requestText, "deny", 421, "protocol", "authority does not match the server name");
                return;
            }
            x.Decision = x.Policy.Evaluate(a);
            if (!x.Decision.Allowed)
            {
                var why = x.Decision.Reason ?? "denied by policy";
                await Page(http, x, 403, why, x.Decision.RuleName).ConfigureAwait(false);
                Log(http, x, conn, target, requestText, "deny", 403, x.Decision.RuleName, why);
                return;
            }
            if (target.Failure is { } failure)
            {
                await Page(http, x, 502, failure, null).ConfigureAwait(false);
                Log(http, x, conn, target, requestText, "allow", 502, x.Decision.RuleName, failure);
                return;
            }
            if (http.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody == true)
            {
                x.In = new CountingStream(req.Body);
                req.Body = x.In;
            }
            http.Features.Set(x);
            var limits = ctx.Config.Limits;
            var config = new ForwarderRequestConfig
            {
                Version = HttpVersion.Version20,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
                ActivityTimeout = limits.ResponseTimeout,
            };
            var err = await forwarder.SendAsync(http, target.UpstreamPrefix, target.Upstream!, config, _transformer).ConfigureAwait(false);
            if (err == ForwarderError.None)
            {
                if (x.ResponseDenied is { } rd) Log(http, x, conn, target, requestText, "deny", 403, rd.RuleName, rd.Reason ?? "response denied by policy");
                else Log(http, x, conn, target, requestText, "allow", http.Response.StatusCode, x.Decision.RuleName, x.Decision.Reason);
                return;
            }
            var ex = http.Features.Get<IForwarderErrorFeature>()?.Exception;
            var reason = target.LastFailure ?? $"upstream {target.Authority}: {err}: {Innermost(ex)}";
            int status = http.Response.StatusCode;
            if (!http.Response.HasStarted)
            {
                status = err switch
                {
                    ForwarderError.RequestTimedOut => 504,
                    ForwarderError.RequestBodyClient => 400,
                    _ => 502,
                };
                if (!http.RequestAborted.IsCancellationRequested) await Page(http, x, status, reason, null).ConfigureAwait(false);
            }
            Log(http, x, conn, target, requestText, "allow", status, x.Decision.RuleName, reason);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or Microsoft.AspNetCore.Connections.ConnectionAbortedException or ObjectDisposedException)
        {
            Log(http, x, conn, target, requestText, x.Decision.Allowed ? "allow" : "deny", 499, x.Decision.RuleName ?? "protocol", "client closed the stream");
        }
    }

    static string Innermost(Exception? e)
    {
        if (e is null) return "unknown error";
        while (e.InnerException is not null) e = e.InnerException;
        return e.Message;
    }

    static async Task Page(HttpContext http, Exchange x, int status, string reason, string? rule)
    {
        var resp = http.Response;
        resp.Headers.Clear();
        resp.StatusCode = status;
        resp.ContentType = "text/html; charset=utf-8";
        resp.Headers["X-Bastion-Request-Id"] = x.Id;
        resp.Headers.Via = ViaValue;
        var bytes = Encoding.UTF8.GetBytes(ErrorPages.Html(status, reason, x.Id, status == 403 ? rule : null));
        resp.ContentLength = bytes.Length;
        x.BytesOut = bytes.Length;
        if (!HttpMethods.IsHead(http.Request.Method)) await resp.Body.WriteAsync(bytes).ConfigureAwait(false);
    }

    void Log(HttpContext http, Exchange x, ClientConnection conn, InspectedOrigin target, string request, string verdict, int status, string? rule, string? reason)
    {
        long bytesIn = x.In?.Count ?? (http.Request.ContentLength ?? 0);
        long bytesOut = x.Out?.Count ?? x.BytesOut;
        Interlocked.Add(ref conn.BytesIn, bytesIn);
        Interlocked.Add(ref conn.BytesOut, bytesOut);
        ctx.Metrics.Bytes(ctx.Name, bytesIn, bytesOut);
        ctx.Record(new AccessEvent
        {
            Id = x.Id,
            Listener = ctx.Name,
            Type = ctx.TypeName,
            Client = conn.ClientText,
            User = conn.User,
            Request = request,
            Verdict = verdict,
            Rule = rule,
            Reason = reason,
            Status = status,
            BytesIn = bytesIn,
            BytesOut = bytesOut,
            DurationMs = Stopwatch.GetElapsedTime(x.Start).TotalMilliseconds,
            Tls = "inspected",
            Sni = target.Sni,
        });
    }

    /// <summary>Via on the way up; the response head put to the response rules before any of it reaches the client.</summary>
    sealed class Transformer : HttpTransformer
    {
        public override async ValueTask TransformRequestAsync(HttpContext http, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken ct)
        {
            await base.TransformRequestAsync(http, proxyRequest, destinationPrefix, ct).ConfigureAwait(false);
            proxyRequest.Headers.Host = null;
            proxyRequest.Headers.TryAddWithoutValidation("Via", ViaValue);
        }

        public override async ValueTask<bool> TransformResponseAsync(HttpContext http, HttpResponseMessage? proxyResponse, CancellationToken ct)
        {
            var x = http.Features.Get<Exchange>()!;
            if (proxyResponse is not null && x.Policy.HasResponseRules)
            {
                var a = x.Attrs;
                a.ContentType = proxyResponse.Content.Headers.NonValidated.TryGetValues("Content-Type", out var ctv) ? ctv.ToString() : null;
                a.Size = proxyResponse.Content.Headers.ContentLength ?? -1;
                var d = x.Policy.EvaluateResponse(a);
                if (!d.Allowed)
                {
                    x.ResponseDenied = d;
                    await Page(http, x, 403, d.Reason ?? "response denied by policy", d.RuleName).ConfigureAwait(false);
                    return false;
                }
            }
            var copy = await base.TransformResponseAsync(http, proxyResponse, ct).ConfigureAwait(false);
            if (proxyResponse is not null && copy)
            {
                http.Response.Headers.Append("Via", ViaValue);
                x.Out = new CountingStream(http.Response.Body);
                http.Response.Body = x.Out;
            }
            return copy;
        }
    }
}
