using System.Net;
using Bastion.Policy;

namespace Bastion.Protocols.Http;

/// <summary>
/// Response heads from upstreams that cannot be relayed as they are (issue 9): a response framed two ways (the client
/// would take the rest of it as the next response), or a 101 the request did not ask for (the connection would become
/// a tunnel no policy sees). Both listeners answer 502 and drop the upstream connection.
/// </summary>
public static class UpstreamResponses
{
    /// <summary>Why the response is refused, or null. <paramref name="askedUpgrade"/>: the protocols the request asked to switch to.</summary>
    public static string? Refusal(HttpResponseMessage response, IReadOnlyList<string>? askedUpgrade)
    {
        if (response.StatusCode == HttpStatusCode.SwitchingProtocols)
        {
            if (askedUpgrade is null || askedUpgrade.Count == 0) return "a 101 Switching Protocols the request did not ask for";
            var to = response.Headers.NonValidated.TryGetValues("Upgrade", out var up) ? up.ToString() : "";
            if (!Names(to, askedUpgrade)) return $"an upgrade to '{to}', which the request did not ask for";
            return null;
        }
        bool chunked = response.Headers.TransferEncodingChunked == true || response.Headers.NonValidated.Contains("Transfer-Encoding");
        if (!response.Content.Headers.NonValidated.TryGetValues("Content-Length", out var lengths)) return null;
        if (chunked) return "both Content-Length and Transfer-Encoding";
        string? first = null;
        foreach (var v in lengths)
        {
            foreach (var range in v.AsSpan().Split(','))
            {
                var one = HeaderValue.TrimOws(v.AsSpan()[range]);
                if (one.IsEmpty || one.ContainsAnyExceptInRange('0', '9')) return "an invalid Content-Length";
                if (first is null) first = one.ToString();
                else if (!one.SequenceEqual(first)) return "conflicting Content-Length values";
            }
        }
        return null;
    }

    /// <summary>Every protocol the response switches to was asked for (tokens compared without their version).</summary>
    static bool Names(string upgrade, IReadOnlyList<string> asked)
    {
        bool any = false;
        var all = upgrade.AsSpan();
        foreach (var range in all.Split(','))
        {
            var token = HeaderValue.TrimOws(all[range]);
            if (token.IsEmpty) continue;
            any = true;
            bool found = false;
            foreach (var a in asked)
                if (token.Equals(a, StringComparison.OrdinalIgnoreCase) || Base(token).Equals(Base(a), StringComparison.OrdinalIgnoreCase)) { found = true; break; }
            if (!found) return false;
        }
        return any;
    }

    static ReadOnlySpan<char> Base(ReadOnlySpan<char> token)
    {
        int slash = token.IndexOf('/');
        return slash < 0 ? token : token[..slash];
    }

    /// <summary>The response's media types as response rules judge them: every Content-Type line, joined.</summary>
    public static string? ContentTypes(HttpResponseMessage response) =>
        response.Content.Headers.NonValidated.TryGetValues("Content-Type", out var v) ? v.ToString() : null;
}
