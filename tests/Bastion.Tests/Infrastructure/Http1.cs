using System.Text;

namespace Bastion.Tests.Infrastructure;

/// <summary>One raw HTTP/1.1 exchange (the request sent byte for byte, `Connection: close`), split into status and body.</summary>
public sealed record Http1Response(int Status, string Head, string Body)
{
    public static async Task<Http1Response> SendAsync(int port, string requestLine, params string[] headers)
    {
        var sb = new StringBuilder(requestLine).Append("\r\n");
        foreach (var h in headers) sb.Append(h).Append("\r\n");
        sb.Append("Connection: close\r\n\r\n");
        return Parse(await Raw.ExchangeAsync(port, sb.ToString()));
    }

    public static Http1Response Parse(string raw)
    {
        int end = raw.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        var head = end < 0 ? raw : raw[..end];
        var body = end < 0 ? "" : raw[(end + 4)..];
        int status = head.StartsWith("HTTP/1.", StringComparison.Ordinal) && head.Length >= 12 && int.TryParse(head.AsSpan(9, 3), out var s) ? s : 0;
        return new Http1Response(status, head, body);
    }

    public override string ToString() => $"{Head}\n\n{Body}";
}
