using System.Text;

namespace Bastion.Tests.Codec;

/// <summary>
/// Issue 14's exhaustive framing cases: every byte 0x00–0xFF inserted at every position of a
/// `Transfer-Encoding: chunked` and a `Content-Length: 5` line (before, inside and after the name and the value),
/// and put in place of every byte of it. Each case is a whole request with the body its unmutated header frames.
/// </summary>
public static class FramingMutations
{
    public sealed record Case(string Label, byte[] Wire, string Header);

    public const string TeLine = "Transfer-Encoding: chunked";
    public const string ClLine = "Content-Length: 5";
    public const string ChunkedBody = "5\r\nhello\r\n0\r\n\r\n";
    public const string PlainBody = "hello";

    /// <param name="requestLine">e.g. "POST /x HTTP/1.1" or an absolute-form one for a forward proxy.</param>
    /// <param name="host">the Host field value.</param>
    public static IEnumerable<Case> All(string requestLine, string host)
    {
        foreach (var (line, body) in new[] { (TeLine, ChunkedBody), (ClLine, PlainBody) })
        {
            var name = line[..line.IndexOf(':')];
            for (int b = 0; b < 256; b++)
            {
                for (int at = 0; at <= line.Length; at++)
                    yield return Make($"{name} insert 0x{b:x2} at {at}", line.Insert(at, ((char)b).ToString()));
                for (int at = 0; at < line.Length; at++)
                    if (line[at] != (char)b)
                        yield return Make($"{name} replace {at} with 0x{b:x2}", line.Remove(at, 1).Insert(at, ((char)b).ToString()));
            }

            Case Make(string label, string mutated) => new(label,
                Encoding.Latin1.GetBytes($"{requestLine}\r\nHost: {host}\r\n{mutated}\r\n\r\n{body}"), name);
        }
    }
}
