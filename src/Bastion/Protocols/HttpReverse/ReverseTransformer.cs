using Bastion.Protocols.Http;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;
using Yarp.ReverseProxy.Forwarder;

namespace Bastion.Protocols.HttpReverse;

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
        rs.X.ResponseStarted();
        if (proxyResponse is not null && rs.State.Policy.HasResponseRules)
        {
            var headers = proxyResponse.Content.Headers;
            var d = HttpDecisions.JudgeResponse(rs.State.Policy, rs.Attrs, headers.ContentType?.MediaType, headers.ContentLength);
            if (!d.Allowed)
            {
                // Nothing of the upstream's response has been sent: replace it whole.
                rs.ResponseDenied = d;
                http.Response.Headers.Clear();
                await ReverseHandler.Page(http, 403, d.Reason ?? "response denied by policy", rs, d.RuleName).ConfigureAwait(false);
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
