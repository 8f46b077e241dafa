using Bastion.Protocols.Http.Codec;

namespace Bastion.Tests.Codec;

/// <summary>Every byte in every position of the framing headers, sans-I/O: the codec must agree with the reference model.</summary>
public sealed class FramingExhaustiveTests
{
    [Fact]
    public void Every_byte_in_every_position_of_te_and_cl_agrees_with_the_model()
    {
        int cases = 0, chunked = 0, length = 0, refused = 0, other = 0;
        var problems = new List<string>();
        foreach (var c in FramingMutations.All("POST /x HTTP/1.1", "a.example"))
        {
            cases++;
            var (r, h, e, _) = RequestParserTests.Parse(c.Wire);
            var model = ReferenceModel.Request(c.Wire);
            Assert.False(model.NeedMore, c.Label);
            string codec = r == ParseResult.Complete ? $"ok {h.Framing.Kind} {h.Framing.Length}" : r == ParseResult.Invalid ? $"{e.Status}" : "need-more";
            if (codec != model.ToString()) problems.Add($"{c.Label}: codec {codec} ({e.Reason}), model {model}");
            if (r == ParseResult.Invalid) refused++;
            else if (h.Framing.Kind == BodyKind.Chunked) chunked++;
            else if (h.Framing.Kind == BodyKind.Length) length++;
            else other++;
        }
        Assert.True(problems.Count == 0, $"{problems.Count} disagreements:\n" + string.Join("\n", problems.Take(50)));
        // The space of 256 x positions: most bytes break the header, a few keep its meaning.
        Assert.True(cases > 20_000, $"{cases} cases");
        Assert.True(refused > cases / 2, $"{refused} refused of {cases}");
        Assert.True(chunked > 0 && length > 0 && other > 0, $"chunked {chunked}, length {length}, other {other}");
    }

    [Fact]
    public void Same_on_http_1_0_where_transfer_encoding_is_always_refused()
    {
        foreach (var c in FramingMutations.All("POST /x HTTP/1.0", "a.example"))
        {
            var (r, h, e, _) = RequestParserTests.Parse(c.Wire);
            var model = ReferenceModel.Request(c.Wire);
            string codec = r == ParseResult.Complete ? $"ok {h.Framing.Kind} {h.Framing.Length}" : $"{e.Status}";
            Assert.True(codec == model.ToString(), $"{c.Label}: codec {codec} ({e.Reason}), model {model}");
            Assert.False(r == ParseResult.Complete && h.Framing.Kind == BodyKind.Chunked, c.Label);
        }
    }
}
