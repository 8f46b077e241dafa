using Bastion.Protocols.Http;

namespace Bastion.Protocols.HttpProxy;

/// <summary>The forward proxy's header rules: what crosses to the upstream and back (hop-by-hop removed, Via added, Max-Forwards counted down).</summary>
static class ForwardHeaders
{
    public const string ViaValue = "1.1 bastion";

    public static HashSet<string>? ConnectionTokens(HttpResponseMessage response)
    {
        if (!response.Headers.NonValidated.TryGetValues("Connection", out var values)) return null;
        var set = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var v in values)
            foreach (var t in v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                set.Add(t);
        return set;
    }

    public static void CopyRequestHeaders(RequestHead h, HttpRequestMessage request)
    {
        HashSet<string>? named = null;
        foreach (var (k, v) in h.Headers)
        {
            if (!k.Equals("Connection", StringComparison.OrdinalIgnoreCase) && !k.Equals("Proxy-Connection", StringComparison.OrdinalIgnoreCase)) continue;
            foreach (var t in v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                (named ??= new(StringComparer.OrdinalIgnoreCase)).Add(t);
        }
        string? via = null;
        foreach (var (name, value) in h.Headers)
        {
            if (HttpHeaderRules.IsHopByHop(name) || named?.Contains(name) == true) continue;
            if (name.Equals("Host", StringComparison.OrdinalIgnoreCase)) continue;   // the target's authority wins (RFC 9112 §3.2.2)
            if (name.Equals("Expect", StringComparison.OrdinalIgnoreCase)) continue; // answered by the proxy itself
            if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase)) continue;
            if (name.Equals("Via", StringComparison.OrdinalIgnoreCase)) { via = via is null ? value : $"{via}, {value}"; continue; }
            if (name.Equals("Max-Forwards", StringComparison.OrdinalIgnoreCase) && long.TryParse(value, out var mf) && h.Method is "OPTIONS" or "TRACE")
            {
                request.Headers.TryAddWithoutValidation(name, (mf - 1).ToString(System.Globalization.CultureInfo.InvariantCulture));
                continue;
            }
            if (!request.Headers.TryAddWithoutValidation(name, value))
                request.Content?.Headers.TryAddWithoutValidation(name, value);
        }
        request.Headers.TryAddWithoutValidation("Via", via is null ? ViaValue : $"{via}, {ViaValue}");
    }
}
