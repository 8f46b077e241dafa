using System.Net;

namespace Bastion.Protocols.Http;

/// <summary>
/// The pages the gateway answers with itself (forward and reverse proxy alike): they name the status, the reason,
/// the rule for a policy denial, and the request id that finds the log line.
/// </summary>
public static class ErrorPages
{
    const string Style = "body{font:15px system-ui,sans-serif;margin:3em auto;max-width:40em;color:#222}h1{font-size:1.4em}code{background:#f3f3f3;padding:0 .3em}";

    public const string ContentType = "text/html; charset=utf-8";

    public static string Html(int status, string reason, string requestId, string? rule)
    {
        var title = $"{status} {ReasonPhrases.Get(status)}";
        var ruleText = rule is null ? "" : $"<p>Rule: <code>{WebUtility.HtmlEncode(rule)}</code></p>";
        return $"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>{Style}</style></head>\n"
            + $"<body><h1>{title}</h1>\n<p>{WebUtility.HtmlEncode(reason)}</p>{ruleText}\n"
            + $"<p>Request id: <code>{WebUtility.HtmlEncode(requestId)}</code></p>\n<hr><p><small>bastion</small></p></body></html>\n";
    }
}
