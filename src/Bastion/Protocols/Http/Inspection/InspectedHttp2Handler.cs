using System.Net;
using System.Text;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;
using Bastion.Protocols.HttpReverse;
using Bastion.Policy.Canonical;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Yarp.ReverseProxy.Forwarder;

namespace Bastion.Protocols.Http.Inspection;

/// <summary>
/// One HTTP/2 request inside an inspected tunnel: the same attributes (<see cref="TunnelTarget"/>), decisions,
/// response rules, error pages and exchange record as the HTTP/1.1 engine gives a request in a tunnel; YARP
/// streams it to the origin over the tunnel's own h2 connection.
/// </summary>
sealed class InspectedHttp2Handler(ListenerContext ctx, IHttpForwarder forwarder)
{
    const string ViaValue = "2 bastion";
    readonly Transformer _transformer = new();

    /// <summary>What one request carries from the handler to the transformer.</summary>
    sealed class State
    {
        public required Exchange X;
        public required CompiledPolicy Policy;
        public readonly RequestAttributes Attrs = new();
        public Decision? ResponseDenied;
        public CountingStream? In, Out;
    }

    public async Task HandleAsync(HttpContext http)
    {
        var target = http.Features.Get<InspectedOrigin>()!;
        var conn = http.Features.Get<ClientConnection>()!;
        var x = ctx.Open(conn, ExchangeKinds.Request);
        x.Tls = "inspected";
        x.Sni = target.Sni;
        var st = new State { X = x, Policy = ctx.Policy };
        var req = http.Request;
        var raw = http.Features.Get<IHttpRequestFeature>()?.RawTarget is { Length: > 0 } t ? t : req.Path.Value + req.QueryString.Value;
        x.Request = $"{req.Method} {target.Url(raw.StartsWith('/') ? raw : "/")}";
        try
        {
            var a = st.Attrs;
            a.Source = conn.Client.Address;
            a.User = conn.User;
            a.Headers = new HeaderSource(req.Headers);
            a.Size = req.ContentLength ?? -1;
            if (!TunnelTarget.TryRequest(a, target, req.Method, raw, req.Host.Value, new CanonicalTarget(), out var url, out var status, out var why, ctx.Config))
            {
                await PageAsync(http, st, status, why!, null).ConfigureAwait(false);
                x.Deny(PseudoRules.Protocol, why);
                return;
            }
            x.Request = $"{req.Method} {url}";
            var d = HttpDecisions.Decide(st.Policy, a);
            x.Decide(d);
            if (!d.Allowed)
            {
                await PageAsync(http, st, 403, d.Reason ?? "denied by policy", d.RuleName).ConfigureAwait(false);
                return;
            }
            if (target.Failure is { } failure)
            {
                x.Reason = failure;
                await PageAsync(http, st, 502, failure, null).ConfigureAwait(false);
                return;
            }
            if (http.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody == true)
            {
                st.In = new CountingStream(req.Body);
                req.Body = st.In;
            }
            http.Features.Set(st);
            var config = new ForwarderRequestConfig
            {
                Version = HttpVersion.Version20,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
                ActivityTimeout = ctx.Config.Limits.ResponseTimeout,
            };
            x.Upstream = target.Authority;
            x.UpstreamSent();
            var err = await forwarder.SendAsync(http, target.UpstreamPrefix, target.Upstream!, config, _transformer).ConfigureAwait(false);
            if (err == ForwarderError.None)
            {
                x.Status = st.ResponseDenied is null ? http.Response.StatusCode : 403;
                return;
            }
            var ex = http.Features.Get<IForwarderErrorFeature>()?.Exception;
            x.Reason = target.LastFailure ?? $"upstream {target.Authority}: {err}: {Innermost(ex)}";
            x.Status = http.Response.StatusCode;
            if (!http.Response.HasStarted && !http.RequestAborted.IsCancellationRequested)
                await PageAsync(http, st, err switch { ForwarderError.RequestTimedOut => 504, ForwarderError.RequestBodyClient => 400, _ => 502 }, x.Reason, null).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or Microsoft.AspNetCore.Connections.ConnectionAbortedException or ObjectDisposedException)
        {
            x.Status = 499;
            x.Reason = "client closed the stream";
        }
        finally
        {
            x.AddIn(st.In?.Count ?? 0);
            x.AddOut(st.Out?.Count ?? 0);
            x.Close();
        }
    }

    static string Innermost(Exception? e)
    {
        if (e is null) return "unknown error";
        while (e.InnerException is not null) e = e.InnerException;
        return e.Message;
    }

    /// <summary>The gateway's own page (403, 421, 502...), as the HTTP/1.1 engine writes it.</summary>
    static async Task PageAsync(HttpContext http, State st, int status, string reason, string? rule)
    {
        var resp = http.Response;
        resp.Headers.Clear();
        resp.StatusCode = status;
        resp.ContentType = ErrorPages.ContentType;
        resp.Headers["X-Bastion-Request-Id"] = st.X.Id;
        resp.Headers.Via = ViaValue;
        var bytes = Encoding.UTF8.GetBytes(ErrorPages.Html(status, reason, st.X.Id, status == 403 ? rule : null));
        resp.ContentLength = bytes.Length;
        st.X.Status = status;
        if (!HttpMethods.IsHead(http.Request.Method))
        {
            await resp.Body.WriteAsync(bytes).ConfigureAwait(false);
            st.X.AddOut(bytes.Length);
        }
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
            var st = http.Features.Get<State>()!;
            st.X.ResponseStarted();
            if (proxyResponse is not null && st.Policy.HasResponseRules)
            {
                var contentType = proxyResponse.Content.Headers.NonValidated.TryGetValues("Content-Type", out var ctv) ? ctv.ToString() : null;
                var d = HttpDecisions.JudgeResponse(st.Policy, st.Attrs, contentType, proxyResponse.Content.Headers.ContentLength);
                if (!d.Allowed)
                {
                    st.ResponseDenied = d;
                    st.X.Decide(d);
                    await PageAsync(http, st, 403, d.Reason ?? "response denied by policy", d.RuleName).ConfigureAwait(false);
                    return false;
                }
            }
            var copy = await base.TransformResponseAsync(http, proxyResponse, ct).ConfigureAwait(false);
            if (proxyResponse is not null && copy)
            {
                http.Response.Headers.Append("Via", ViaValue);
                st.Out = new CountingStream(http.Response.Body);
                http.Response.Body = st.Out;
            }
            return copy;
        }
    }
}
