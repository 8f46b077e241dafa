using Bastion.Protocols.Http;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;
using Yarp.ReverseProxy.Forwarder;

namespace Bastion.Protocols.HttpReverse;

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
        rs.X.ResponseStarted();
        if (proxyResponse is not null && UpstreamResponses.Refusal(proxyResponse, rs.Upgrade) is { } refusal)
        {
            // Never relayed; YARP disposes the unread response, which drops the upstream connection.
            rs.ResponseRefused = $"upstream sent {refusal}";
            http.Response.Headers.Clear();
            await ReverseHandler.Page(http, 502, rs.ResponseRefused, rs).ConfigureAwait(false);
            return false;
        }
        if (proxyResponse is not null && rs.State.Policy.HasResponseRules)
        {
            var headers = proxyResponse.Content.Headers;
            var d = HttpDecisions.JudgeResponse(rs.State.Policy, rs.Attrs, UpstreamResponses.ContentTypes(proxyResponse), headers.ContentLength);
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
